"""Locally adaptive conformal prediction intervals from cross-fitted residuals.

Nonconformity scores are residuals normalized by a local scale (locally weighted conformal
prediction, Lei, G'Sell, Rinaldo, Tibshirani & Wasserman 2018, sec. 5.2), with each training
sample's residual taken from the cross-fitting model that did not see it (cross-conformal
prediction, Vovk 2015):

.. math::

    R_i = \\frac{|y_i - \\hat y_{-f(i)}(x_i)|}{g(x_i)}, \\qquad
    \\hat q_\\alpha = R_{(\\lceil (n+1)(1-\\alpha) \\rceil)}, \\qquad
    C_\\alpha(x) = \\big[\\hat y(x) - \\hat q_\\alpha\\, g(x),\\ \\hat y(x) + \\hat q_\\alpha\\, g(x)\\big],

where :math:`R_{(j)}` is the :math:`j`-th smallest score (:math:`+\\infty` when :math:`j > n`) and
:math:`\\hat y` the final model, fitted on all the data. For exchangeable scores this is split
conformal prediction with marginal coverage :math:`1-\\alpha`; here the fold models are trained on
a fraction :math:`(F-1)/F` of the data and are slightly less accurate than :math:`\\hat y`, so the
coverage errs on the safe side. The interval is wide where the residual scale :math:`g` is large.
(CV+, Barber et al. 2021, which centres the interval on the fold models instead, over-covered
more on the benchmark data during development, because the fold models disagree.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["conformal_quantile"]


def conformal_quantile(sorted_scores: np.ndarray, alpha: float) -> float:
    """:math:`\\hat q_\\alpha`: the :math:`\\lceil (n+1)(1-\\alpha) \\rceil`-th smallest score.

    Returns ``inf`` when that rank exceeds ``n`` (too few scores for level ``1 - alpha``).
    """
    n = sorted_scores.shape[0]
    rank = int(np.ceil((n + 1) * (1.0 - alpha)))
    return float("inf") if rank > n else float(sorted_scores[max(rank, 1) - 1])
