"""The stochastic retraining paths (TIL, FDD, DBSD, Schrödinger bridge) against KDT on the synthetic benchmark.

    python benchmarks/retrain_diffuse.py [--quick] [--seeds 0 1 2] [--jobs 3] [--out DIR]

Same problem, anchors (θ†, trained in the same run) and table as ``benchmarks/retrain_synthetic.py``,
plus each method's wall time (``retrain(...)`` alone) and, for DBSD and SB, the validation loss
at t = 1/2 of the method's path against the aligned straight line θ* → πθ†; saves
retrain_synthetic.{md,png} under ``--out``. Needs scikit-learn.
"""

import sys

from synthfuse.retrain.bench import main

if __name__ == "__main__":
    sys.exit(main(["synthetic", "--methods", "kdt", "til", "fdd", "dbsd", "sb", *sys.argv[1:]]))
