"""Labelled KL programs: the Θ-class families, the generator and coreset distillation."""

from synthfuse.koda.data.distill import SPECTRAL_FEATURES, Coreset, distill, signatures_of, topological_signature
from synthfuse.koda.data.families import FAMILIES, KERNEL_CLASSES, THETA_CLASSES, Family
from synthfuse.koda.data.generator import LabelledProgram, generate, generate_one, read_shards, write_shards

__all__ = ["Coreset", "FAMILIES", "Family", "KERNEL_CLASSES", "LabelledProgram", "SPECTRAL_FEATURES", "THETA_CLASSES",
           "distill", "generate", "generate_one", "read_shards", "signatures_of", "topological_signature",
           "write_shards"]
