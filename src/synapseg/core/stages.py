"""Stages: small objects with declared inputs and outputs, kept in one registry.

A stage reads named artifacts (``image``, ``grid``, ``probabilities``, ...) and produces
named artifacts; :func:`synapseg.segment` and the file runner
(:mod:`synapseg.core.runner`) order the registered stages by these names, so a new stage
(membranes, filaments, ...) is added by registering it, never by editing a driver::

    @register_stage(inputs=("probabilities",), outputs=("coverage",), params={"level": 0.5})
    def coverage(ctx):
        return {"coverage": float((ctx["probabilities"] > ctx.params["level"] * 255).mean())}

The artifacts every run starts from are ``image`` (the (z, y, x) array or memmap) and
``grid`` (:class:`~synapseg.core.grid.Grid`). Stage functions are pure on arrays: they may
write into a sink (:meth:`StageContext.sink`) but never open files themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SOURCES",
    "Stage",
    "StageContext",
    "register_stage",
    "unregister_stage",
    "registered_stages",
    "stage_order",
    "temporary_stages",
]

SOURCES = ("image", "grid")  # the artifacts a run starts from


@dataclass
class StageContext:
    """What a stage function gets: its input artifacts, the parameters, sinks and facts.

    ``ctx["name"]`` is an input artifact; ``ctx.params`` the parameters (each stage's
    declared defaults updated with the caller's); ``ctx.facts`` a dict for the report
    (timings, counts, decisions, warnings); ``ctx.sink(name, shape, dtype)`` the array to
    write an output into (the caller's sink, or a new in-memory array).
    """

    stage: str
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]
    sinks: Mapping[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.inputs[name]

    def sink(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """The array to write output ``name`` into: the caller's sink when one was given
        (checked for shape and dtype), else ``np.zeros(shape, dtype)``."""
        given = self.sinks.get(name)
        if given is None:
            return np.zeros(shape, dtype)
        if tuple(given.shape) != tuple(shape) or np.dtype(given.dtype) != np.dtype(dtype):
            raise ValueError(
                f"sink for '{name}' is {tuple(given.shape)} {np.dtype(given.dtype)}, "
                f"stage '{self.stage}' writes {tuple(shape)} {np.dtype(dtype)}"
            )
        return given


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    Attributes
    ----------
    name
        Unique name (also the key of its facts in the report).
    inputs, outputs
        Artifact names read and produced. Each output has exactly one producing stage.
    run
        ``run(ctx: StageContext) -> dict`` returning every declared output by name.
    params
        Parameters the stage reads, with their defaults (part of its resume digest).
    persist
        Outputs the file runner saves and reloads when resuming (the others are cheap or
        kept in the report as facts and are recomputed when a later stage needs them).
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[[StageContext], Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    persist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "persist", tuple(self.persist))
        if not self.outputs:
            raise ValueError(f"stage '{self.name}' declares no outputs")
        if set(self.persist) - set(self.outputs):
            raise ValueError(f"stage '{self.name}' persists artifacts it does not produce")


_REGISTRY: dict[str, Stage] = {}


def register_stage(
    stage: Stage | None = None,
    *,
    name: str | None = None,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    params: Mapping[str, Any] | None = None,
    persist: Iterable[str] = (),
    replace: bool = False,
) -> Any:
    """Add a stage to the registry, directly or as a decorator of its run function.

    Parameters
    ----------
    stage
        A :class:`Stage`; omit it to use the call as a decorator.
    name, inputs, outputs, params, persist
        The :class:`Stage` fields when decorating (``name`` defaults to the function's).
    replace
        Allow replacing a registered stage of the same name.

    Raises
    ------
    ValueError
        The name is taken, or another stage already produces one of the outputs.

    Examples
    --------
    >>> @register_stage(inputs=("image",), outputs=("mean_density",))
    ... def mean_density(ctx):
    ...     return {"mean_density": float(np.mean(ctx["image"]))}
    >>> "mean_density" in registered_stages()
    True
    >>> unregister_stage("mean_density")
    """
    if stage is None:

        def decorate(fn: Callable[[StageContext], Mapping[str, Any]]) -> Callable:
            register_stage(
                Stage(
                    name or fn.__name__,
                    tuple(inputs),
                    tuple(outputs),
                    fn,
                    dict(params or {}),
                    tuple(persist),
                ),
                replace=replace,
            )
            return fn

        return decorate
    if stage.name in _REGISTRY and not replace:
        raise ValueError(f"a stage named '{stage.name}' is already registered")
    for other in _REGISTRY.values():
        clash = set(other.outputs) & set(stage.outputs)
        if other.name != stage.name and clash:
            raise ValueError(f"'{sorted(clash)[0]}' is already produced by stage '{other.name}'")
    if set(stage.outputs) & set(SOURCES):
        raise ValueError(f"stage '{stage.name}' may not produce {SOURCES}")
    _REGISTRY[stage.name] = stage
    return stage


def unregister_stage(name: str) -> None:
    """Remove a stage from the registry (no error when it is not there)."""
    _REGISTRY.pop(name, None)


def registered_stages() -> dict[str, Stage]:
    """Name → :class:`Stage` of every registered stage (built-in ones included)."""
    from synapseg.core import builtin  # noqa: F401  (registers the built-in stages)

    return dict(_REGISTRY)


@contextmanager
def temporary_stages() -> Iterator[None]:
    """Undo every registration made inside the ``with`` block (for tests and notebooks).

    Examples
    --------
    >>> with temporary_stages():
    ...     _ = register_stage(Stage("twice", ("image",), ("doubled",), lambda c: {}))
    ...     "twice" in registered_stages()
    True
    >>> "twice" in registered_stages()
    False
    """
    registered_stages()  # the built-in stages are part of the saved state
    saved = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)


def stage_order(stages: Mapping[str, Stage], wanted: Iterable[str] | None = None) -> list[Stage]:
    """The stages needed for the ``wanted`` artifacts (default: all), inputs first.

    Raises
    ------
    ValueError
        An input has no producing stage, or the stages form a cycle.
    """
    producer = {out: st for st in stages.values() for out in st.outputs}
    wanted = list(producer) if wanted is None else list(wanted)
    order: list[Stage] = []
    state: dict[str, str] = {}

    def visit(stage: Stage) -> None:
        if state.get(stage.name) == "done":
            return
        if state.get(stage.name) == "visiting":
            raise ValueError(f"stages form a cycle through '{stage.name}'")
        state[stage.name] = "visiting"
        for name in stage.inputs:
            if name in SOURCES:
                continue
            if name not in producer:
                raise ValueError(f"stage '{stage.name}' needs '{name}', which no stage produces")
            visit(producer[name])
        state[stage.name] = "done"
        order.append(stage)

    for name in wanted:
        if name in SOURCES:
            continue
        if name not in producer:
            raise ValueError(f"no registered stage produces '{name}'")
        visit(producer[name])
    return order
