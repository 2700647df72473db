"""Retraining methods on scikit-learn's digits, pooled 5-fold cross-validation, and OTWI's loss barrier.

    python benchmarks/retrain_digits.py [--quick] [--seeds 0 1 2] [--jobs 3] [--ablations] [--out DIR]

Prints accuracy / negative flips (counts over the 1797 pooled test predictions) / dominance of
every method against θ† (trained in the same run), mean ± std over seeds, the loss barrier
θ* → θ† naive vs weight-matched (MLP 64-128-128-10), and saves retrain_digits.{md,png}.
Needs scikit-learn. Same as ``synthfuse retrain bench digits``.
"""

import sys

from synthfuse.retrain.bench import main

if __name__ == "__main__":
    sys.exit(main(["digits", *sys.argv[1:]]))
