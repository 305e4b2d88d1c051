"""What makes a fast layer a *twin* of a teaching one: the same state, another forward."""
from __future__ import annotations


class Twin:
    """Mixin of the fast layers. ``Fast.of(m)`` is an object of the fast class whose
    attributes are the teaching module ``m``'s own: the *same* ``params`` and ``grads``
    dicts, thresholds and v(0), so training a twin trains the original and an edit of the
    original reaches the twin. State a run creates (``v``, buffers) is the twin's alone."""

    @classmethod
    def of(cls, m):
        t = cls.__new__(cls)
        vars(t).update(vars(m))
        return t
