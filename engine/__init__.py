"""aidsafe: a declarative, YAML-driven async engine for policy-embedded CoT data."""

__version__ = "0.1.0"
