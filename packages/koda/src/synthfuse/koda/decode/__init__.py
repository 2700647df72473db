"""Decoding KL programs from a KODA model.

- :func:`greedy`, :func:`sample` (temperature, top-k, top-p, seeded), :func:`contrastive_search`
  (Su et al. 2022; deterministic, or seeded with ``temperature > 0``) and their result
  :class:`Generation` (:mod:`.search`);
- :func:`gumbel_top_k` -- ``k`` tokens drawn without replacement (Kool et al. 2019; :mod:`.gumbel`);
- :class:`ProgramConstraint` -- program tokens only, ``<eos>`` only where a program can end
  (:mod:`.constraint`);
- :func:`filter_logits` -- temperature, top-k and nucleus filtering (:mod:`.filtering`).
"""

from synthfuse.koda.decode.constraint import ProgramConstraint
from synthfuse.koda.decode.filtering import filter_logits
from synthfuse.koda.decode.gumbel import gumbel_top_k
from synthfuse.koda.decode.search import Generation, contrastive_search, greedy, sample

__all__ = ["Generation", "ProgramConstraint", "contrastive_search", "filter_logits", "greedy", "gumbel_top_k",
           "sample"]
