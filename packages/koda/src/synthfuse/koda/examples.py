"""Textbook KL programs with their recurrences and Θ classes (used by the demo, the CLI docs and tests)."""

from __future__ import annotations

__all__ = ["TEXTBOOK"]

#: name -> (KL source, Θ label, recurrence label)
TEXTBOOK = {
    "merge_sort": ("""
def merge_sort(n: int) {
    if n <= 1 { work(1); return; }
    merge_sort(n / 2);
    merge_sort(n - n / 2);
    for i in range(0, n) { work(1); }
}
""", "n log n", "T(n) = 2*T(n/2) + n"),
    "binary_search": ("""
def search(n: int) -> int {
    if n <= 1 { return 0; }
    return search(n / 2) + 1;
}
""", "log n", "T(n) = T(n/2) + 1"),
    "karatsuba": ("""
def karatsuba(n: int) {
    if n <= 1 { work(1); return; }
    let h = n / 2;
    for i in range(0, 3) { karatsuba(h); }
    work(4 * n);
}
""", "n^log2(3)", "T(n) = 3*T(n/2) + n"),
    "strassen": ("""
def strassen(n: int) {
    if n <= 1 { work(1); return; }
    for i in range(0, 7) { strassen(n / 2); }
    for i in range(0, n) { work(n); }
}
""", "n^log2(7)", "T(n) = 7*T(n/2) + n^2"),
    "median_of_medians": ("""
def select(n: int) {
    if n < 10 { work(n); return; }
    select(n / 5);
    select(7 * n / 10);
    work(n);
}
""", "n", "T(n) = T(n/5) + T(7*n/10) + n"),
    "golden": ("""
def fib_like(n: int) {
    if n <= 1 { return; }
    fib_like(n / 2);
    fib_like(n / 4);
    work(1);
}
""", "n^log2((1 + sqrt(5)) / 2)", "T(n) = T(n/2) + T(n/4) + 1"),
    "n_log_n_merge": ("""
def sort2(n: int) {
    if n <= 1 { return; }
    sort2(n / 2);
    sort2(n / 2);
    let j = 1;
    while j < n { work(n); j = j * 2; }
}
""", "n log^2 n", "T(n) = 2*T(n/2) + n log n"),
    "n_over_log_n": ("""
def sort3(n: int) {
    if n <= 2 { return; }
    sort3(n / 2);
    sort3(n / 2);
    work(n / log2(n));
}
""", "n log log n", "T(n) = 2*T(n/2) + n/log n"),
}
