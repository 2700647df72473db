"""Retraining methods on the issue's make_classification problem (θ* on 4k, θ† on 16k samples).

    python benchmarks/retrain_synthetic.py [--quick] [--seeds 0 1 2] [--jobs 3] [--ablations] [--out DIR]

Prints accuracy / negative-flip rate / dominance of every method against θ† (the anchor,
trained in the same run), mean ± std over seeds, and saves retrain_synthetic.{md,png}.
Needs scikit-learn. Same as ``synthfuse retrain bench synthetic``.
"""

import sys

from synthfuse.retrain.bench import main

if __name__ == "__main__":
    sys.exit(main(["synthetic", *sys.argv[1:]]))
