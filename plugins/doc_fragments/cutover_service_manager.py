# -*- coding: utf-8 -*-
# Mirrors module_utils/cutover_services.py SERVICE_MANAGER_SPEC: change both together.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  manager:
    description:
      - The process manager of the components - V(supervisor) (driven over the XML-RPC socket supervisorctl uses)
        or V(systemd) (C(systemctl --no-block)).
    type: str
    choices: [supervisor, systemd]
    default: systemd
  supervisor_config:
    description: The supervisord config file (its C([supervisorctl] serverurl) is used). Required for V(supervisor).
    type: path
"""
