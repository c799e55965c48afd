"""Plans: compiled templates as content-hashed plain data."""

from stratoflow.plan.compile import compile_plan
from stratoflow.plan.model import plan_hash, resolve, seal

__all__ = ["compile_plan", "plan_hash", "resolve", "seal"]
