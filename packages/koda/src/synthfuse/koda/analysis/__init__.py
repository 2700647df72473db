"""Analysis of KL programs: Θ classes, recurrences, Akra–Bazzi, verification, graphs, topology."""

from synthfuse.koda.analysis.akra_bazzi import AkraBazziSolution, akra_bazzi, master_theorem, solve, solve_p
from synthfuse.koda.analysis.cost import StaticCost, recurrence_of, static_cost
from synthfuse.koda.analysis.graphs import (Graph, ast_graph, control_flow_graph, graph_betti, laplacian,
                                            laplacian_spectrum, program_graph, spectral_signature)
from synthfuse.koda.analysis.mathparse import parse_math, parse_theta
from synthfuse.koda.analysis.recurrence import Recurrence, parse_recurrence
from synthfuse.koda.analysis.theta import N, Theta, leading_term, theta_of
from synthfuse.koda.analysis.topology import (betti_numbers, boundary_matrix, clique_complex, euler_characteristic,
                                              hodge_laplacian, hypergraph_complex, simplicial_closure)
from synthfuse.koda.analysis.verify import (VERIFY_CACHE, DynamicFit, Verification, VerifyCache, dynamic_fit, measure,
                                            sample_base, verify)
from synthfuse.koda.errors import KodaAnalysisError, OutOfScopeError

__all__ = [
    "AkraBazziSolution", "DynamicFit", "Graph", "KodaAnalysisError", "N", "OutOfScopeError", "Recurrence",
    "StaticCost", "Theta", "VERIFY_CACHE", "Verification", "VerifyCache", "akra_bazzi", "ast_graph", "betti_numbers", "boundary_matrix",
    "clique_complex", "control_flow_graph", "dynamic_fit", "euler_characteristic", "graph_betti",
    "hodge_laplacian", "hypergraph_complex", "laplacian", "laplacian_spectrum", "leading_term", "master_theorem",
    "measure", "parse_math", "parse_recurrence", "parse_theta", "program_graph", "recurrence_of", "sample_base",
    "simplicial_closure", "solve", "solve_p", "spectral_signature", "static_cost", "theta_of", "verify",
]
