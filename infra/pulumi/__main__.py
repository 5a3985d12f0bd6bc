"""tq on AWS: ``pulumi up`` reads the stack's ``tq:*`` config and builds everything (see docs/DEPLOY.md)."""

from __future__ import annotations

import pulumi

from tq_infra.config import StackConfig
from tq_infra.stack import build

for name, value in build(StackConfig.load()).items():
    pulumi.export(name, value)
