"""What one item carries through its stages: the names templates see and its trace."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

from .llm.client import LLMClient
from .spec import Policy, Workflow
from .templates import Templates


def template_context(workflow: Workflow, row: Mapping[str, Any], values: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """`input`, `vars`, `policies` and every stage result so far, by stage id."""
    return {"input": row, "vars": workflow.vars, "policies": _policies(workflow.policies),
            **values}


@functools.lru_cache(maxsize=16)
def _policies(policies: tuple[Policy, ...]) -> list[dict[str, str]]:
    """Built once per recipe, not per render (templates cannot change it: the sandbox is
    immutable)."""
    return [{"id": p.id, "title": p.title, "text": p.text} for p in policies]


@dataclass
class Item:
    """One input row on its way through the stages."""

    index: int
    id: Any
    row: Mapping[str, Any]
    workflow: Workflow
    templates: Templates
    llm: LLMClient
    values: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)   # stage id -> its trace record

    def context(self, **extra: Any) -> dict[str, Any]:
        ctx = template_context(self.workflow, self.row, self.values)
        ctx.update(extra)
        return ctx

    def trace(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "input": self.row, "stages": self.stages}
