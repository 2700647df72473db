"""The Θ classes of the KODA corpus and the recurrence families that realise them.

Each :class:`Family` is a recurrence ``T(n) = sum a_i T(num_i n / den_i) + g(n)`` with a
hand-written textbook Θ label; the tests check every label against the Akra–Bazzi solver.
``g`` names a cost *kernel* (see :mod:`synthfuse.koda.data.generator`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "Family", "KERNEL_CLASSES", "THETA_CLASSES"]

#: Kernel names -> the Θ class of their cost, as recurrence text.
KERNEL_CLASSES: dict[str, str] = {
    "1": "1", "log n": "log n", "sqrt n": "sqrt(n)", "n": "n", "n log n": "n log n",
    "n/log n": "n / log n", "n^2": "n^2",
}


@dataclass(frozen=True)
class Family:
    """A recurrence family: ``terms`` are ``(a, num, den)`` for ``a T(num n / den)``."""

    name: str
    terms: tuple[tuple[int, int, int], ...]
    g: str
    theta: str

    @property
    def recurrence(self) -> str:
        """The recurrence as text, e.g. ``"T(n) = 2*T(n/2) + n"``."""
        parts = []
        for a, num, den in self.terms:
            arg = f"n/{den}" if num == 1 else f"{num}*n/{den}"
            parts.append(("" if a == 1 else f"{a}*") + f"T({arg})")
        g = KERNEL_CLASSES[self.g]
        return "T(n) = " + " + ".join(parts) + ("" if g == "0" else f" + {g}")


def _f(name: str, terms, g: str, theta: str) -> Family:
    return Family(name, tuple(terms), g, theta)


#: Θ label -> families with that solution.
THETA_CLASSES: dict[str, tuple[Family, ...]] = {
    "log n": (
        _f("binary search", [(1, 1, 2)], "1", "log n"),
        _f("ternary search", [(1, 1, 3)], "1", "log n"),
        _f("two-thirds search", [(1, 2, 3)], "1", "log n"),
    ),
    "log^2 n": (
        _f("search with log-time probes", [(1, 1, 2)], "log n", "log^2 n"),
        _f("ternary search with log probes", [(1, 1, 3)], "log n", "log^2 n"),
    ),
    "n^(1/2)": (
        _f("2-d kd-tree range query", [(2, 1, 4)], "1", "n^(1/2)"),
        _f("three ninths", [(3, 1, 9)], "1", "n^(1/2)"),
    ),
    "n^(1/2) log n": (_f("kd-tree query with sqrt work", [(2, 1, 4)], "sqrt n", "n^(1/2) log n"),),
    "n^log3(2)": (_f("two thirds-size subproblems", [(2, 1, 3)], "1", "n^(log(2)/log(3))"),),
    "n^log2(phi)": (_f("T(n/2)+T(n/4)+1", [(1, 1, 2), (1, 1, 4)], "1", "n^log2((1 + sqrt(5))/2)"),),
    "n^p (2^-p + 3^-p = 1)": (_f("T(n/2)+T(n/3)+1", [(1, 1, 2), (1, 1, 3)], "1", "n^0.78788491102586978363"),),
    "n": (
        _f("tree traversal", [(2, 1, 2)], "1", "n"),
        _f("halving with linear work", [(1, 1, 2)], "n", "n"),
        _f("median of medians", [(1, 1, 5), (1, 7, 10)], "n", "n"),
        _f("three quarter-size subproblems, linear work", [(3, 1, 4)], "n", "n"),
    ),
    "n log n": (
        _f("merge sort", [(2, 1, 2)], "n", "n log n"),
        _f("unbalanced split 1/3-2/3", [(1, 1, 3), (1, 2, 3)], "n", "n log n"),
        _f("three-way merge sort", [(3, 1, 3)], "n", "n log n"),
        _f("four-way merge sort", [(4, 1, 4)], "n", "n log n"),
    ),
    "n log^2 n": (_f("merge sort with n log n merge", [(2, 1, 2)], "n log n", "n log^2 n"),),
    "n log log n": (_f("merge sort with n / log n merge", [(2, 1, 2)], "n/log n", "n log log n"),),
    "n^(3/2)": (_f("eight quarter-size subproblems", [(8, 1, 4)], "n", "n^(3/2)"),),
    "n^log2(3)": (
        _f("Karatsuba", [(3, 1, 2)], "n", "n^log2(3)"),
        _f("three halves, constant work", [(3, 1, 2)], "1", "n^log2(3)"),
    ),
    "n^2": (
        _f("four halves, linear work", [(4, 1, 2)], "n", "n^2"),
        _f("halving with quadratic work", [(1, 1, 2)], "n^2", "n^2"),
        _f("two halves, quadratic work", [(2, 1, 2)], "n^2", "n^2"),
    ),
    "n^2 log n": (_f("four halves, quadratic work", [(4, 1, 2)], "n^2", "n^2 log n"),),
    "n^log2(7)": (_f("Strassen", [(7, 1, 2)], "n^2", "n^log2(7)"),),
    "n^3": (
        _f("naive block matrix product", [(8, 1, 2)], "n^2", "n^3"),
        _f("eight halves, linear work", [(8, 1, 2)], "n", "n^3"),
    ),
}

#: Every family, in a fixed order.
FAMILIES: tuple[Family, ...] = tuple(f for fams in THETA_CLASSES.values() for f in fams)
