"""Which run of the device this is: a random id per process.

The `state` topic carries it with the start counter kept in the device state
(`state.StateStore.next_boot_count`), so the fleet tells a restart (new boot id, count + 1) from a
reconnect (same boot id).
"""

from __future__ import annotations

import uuid

#: One per process: lets the fleet tell a restart from a reconnect (boot_count says how many).
BOOT_ID = str(uuid.uuid4())
