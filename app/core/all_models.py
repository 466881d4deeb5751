"""Import every model module so Base.metadata is complete (Alembic and the schema test)."""

from app.architectures import models as architectures_models  # noqa: F401
from app.auth import models as auth_models  # noqa: F401
from app.runs import models as runs_models  # noqa: F401
