"""Progress within one simulation (issue 34): a run of a tiny network over many steps reports
its image-steps as it goes, with either engine, so a long run prints an ETA early instead of
nothing until its end."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_vgg_snn

from icsnn_np.runs.engine import use_engine
from icsnn_np.runs.progress import tracking


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_a_long_run_reports_progress_during_the_run(engine):
    snn, batches = tiny_vgg_snn()
    x, T = batches[0], 300
    use_engine(snn, engine, chunk=4)
    lines = []
    with tracking(len(x) * T, lines.append, first_s=0.0, every_s=0.0) as done:
        seen = []
        orig = done.advance
        done.advance = lambda n: (seen.append(done.done), orig(n))
        snn.run(x, T)
    assert done.done == len(x) * T
    assert len(seen) >= T // 4 and seen[0] == 0            # reported as it went, chunk by chunk
    assert len(lines) >= 2 and "ETA" in lines[0] and not lines[0].startswith("progress: 100.0%")
