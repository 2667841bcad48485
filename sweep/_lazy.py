"""Package names imported on first use (PEP 562), for the packages every process imports first.

Why: ``import sweep`` runs for the driver, every trial worker and every command; a package ``__init__`` that
imported its exports eagerly would make each of them pay for torch, Optuna or pandas before doing anything.
A package lists ``name -> submodule`` and installs ``lazy_exports``' two functions as its ``__getattr__`` and
``__dir__``; its submodules stay reachable as attributes (``sweep.launch.slurm``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.util import find_spec
from typing import Any, Optional


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any],
                 before: Optional[Callable[[str], None]] = None
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each name to the module that defines it
    (absolute ``sweep.x.y``, or a submodule name of the package); ``before(module)`` runs before that module
    is imported (to import what registers entries first); a found value is cached in ``namespace`` (the
    package's globals)."""

    def module_of(name: str) -> str:
        target = exports[name]
        return target if target.startswith("sweep.") else f"{package}.{target}"

    def getattr_(name: str) -> Any:
        if name not in exports:
            if find_spec(f"{package}.{name}") is None:  # a submodule is found on access
                raise AttributeError(f"module {package!r} has no attribute {name!r}; its public names are "
                                     f"{sorted(exports)}")
            return import_module(f"{package}.{name}")
        if before is not None:
            before(module_of(name))
        value = getattr(import_module(module_of(name)), name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
