"""Shared fixtures of the koda tests: textbook KL programs."""

from __future__ import annotations

import pytest

from synthfuse.koda.examples import TEXTBOOK


@pytest.fixture(params=sorted(TEXTBOOK))
def textbook(request):
    """``(name, source, theta, recurrence)`` of each textbook program."""
    source, theta, rec = TEXTBOOK[request.param]
    return request.param, source, theta, rec
