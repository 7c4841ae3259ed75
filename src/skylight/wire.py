"""Values as they travel as JSON: API and sled-agent bodies, event reasons and details,
saga log entries. Their shape is the JSON's own (``Any`` for a value is JSON's any value);
the models and dataclasses that give them a type live where they are read."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
