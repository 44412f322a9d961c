"""A run's model lineage, read from its ledger: which models' output each model learned from.

Models form a DAG (an ``accumulate`` generation learns from every earlier one). For display each
model hangs under its *deepest* data parent, the one that sets its synthetic depth, and lists
the others beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from collapselab.errors import UserError


@dataclass
class Node:
    model_id: str
    family: str
    depth: int  # synthetic depth: the longest chain of model-made data behind the model
    data_parents: list[str] = field(default_factory=list)  # models whose output it trained on
    human: bool = False  # trained on some human data too


def lineage(ledger_path: str | Path) -> dict[str, Node]:
    from collapselab.provenance.ledger import Ledger

    path = Path(ledger_path)
    if not path.exists():
        raise UserError(f"{path}: no ledger. Pass a run folder made by `collapselab run` (it holds ledger.sqlite).")
    with Ledger(path, create=False) as ledger:
        nodes = {}
        for m in ledger.models():
            docs = ledger.documents(snapshot=m.snapshot) if m.snapshot else []
            parents = sorted({d.model_id for d in docs if d.model_id})
            nodes[m.model_id] = Node(m.model_id, m.family, ledger.synthetic_depth(m.model_id), parents,
                                     any(d.origin == "human" for d in docs))
    return nodes


def main_parent(n: Node, nodes: dict[str, Node]) -> str | None:
    """The data parent that sets ``n``'s synthetic depth (its deepest); None for generation 0."""
    return max(n.data_parents, key=lambda p: nodes[p].depth, default=None)


def children(nodes: dict[str, Node]) -> dict[str | None, list[str]]:
    """Model ids under each main parent (None: the human-data root), shallowest first, then by id."""
    out: dict[str | None, list[str]] = {}
    for n in nodes.values():
        out.setdefault(main_parent(n, nodes), []).append(n.model_id)
    return {k: sorted(v, key=lambda m: (nodes[m].depth, m)) for k, v in out.items()}


def render(nodes: dict[str, Node], title: str):
    """A :class:`rich.tree.Tree`: human data at the root, each model under its deepest parent."""
    from rich.tree import Tree

    root = Tree(f"[bold]{title}[/bold]: human data")
    kids = children(nodes)

    def label(n: Node) -> str:
        main = main_parent(n, nodes)
        others = [p.rsplit("/", 1)[-1] for p in n.data_parents if p != main]
        extra = (" + human data" if n.human and n.data_parents else "") + (f" + output of {', '.join(others)}" if others else "")
        return f"{n.model_id}  [dim]depth {n.depth}{extra}[/dim]"

    def grow(tree, parent: str | None) -> None:
        for mid in kids.get(parent, []):
            grow(tree.add(label(nodes[mid])), mid)

    grow(root, None)
    return root
