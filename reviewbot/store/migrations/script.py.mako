<%!
    def q(value):
        """A Python literal with double quotes (ruff format's style)."""
        return repr(value).replace("'", '"')
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision: str = ${q(up_revision)}
down_revision: str | None = ${q(down_revision)}
branch_labels: str | Sequence[str] | None = ${q(branch_labels)}
depends_on: str | Sequence[str] | None = ${q(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
