"""The registrar's public surface, for a proxy or application server in the same Ray cluster:

    from actors import FOUND, Registrar, load_config

    registrar = Registrar(load_config("site.toml"))
    code, targets = await registrar.lookup("sip:bob@ims.test")

``Registrar`` (the terminating functions of ims_registrar_scscf), the configuration
(``load_config``, ``config_from_dict``, ``Config``, ``ConfigError``), the return codes of
Kamailio's functions and the ``Target`` a look-up answers. Everything else under ``actors`` is
internal and may change without notice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from actors.config import Config, ConfigError, config_from_dict, load_config
from actors.vocabulary import FOUND, INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND, Target

if TYPE_CHECKING:
    from actors.ops.registrar import Registrar

__all__ = [
    "FOUND", "INTERNAL_ERROR", "METHOD_NOT_ALLOWED", "NOT_FOUND",
    "Config", "ConfigError", "Registrar", "Target", "config_from_dict", "load_config",
]


def __getattr__(name: str) -> object:
    # Registrar comes with Ray and the actor hosts: imported on first use, so that importing any
    # pure module (every one of them runs this file first) stays free of both.
    if name == "Registrar":
        from actors.ops.registrar import Registrar

        return Registrar
    raise AttributeError(f"module 'actors' has no attribute {name!r}")
