"""The venue's DCC rule set (config `[dcc]`) applied to one certificate: which ones open the gate.

A rule set is data, not code, so a venue changes what it takes by pushing config, never by updating
firmware. `evaluate` is a pure function of the certificate, the rules and `now`: it returns `OK` or the
name of the first rule that failed, which the verifier turns into the reason `status`. The rule's name
is for tests and for the function's callers only: it says something about the holder's health
(`test-positive`), so the verifier neither returns nor logs it.

What the hcert holds is judged here, never called `malformed` (that is for the container): a field
that is missing, empty or off its form is None in the entry, and fails only a rule that reads it, so
a field no configured rule needs never locks a holder out. A None text never equals an accepted value;
a None date or dose number fails as `entry-unreadable`. Calendar days are UTC days: "14 days after dt"
opens at midnight UTC.

Rules, in the order they are checked:

- `entry-unreadable`       the hcert holds no single entry (none of `v`, `t`, `r`, several, or one
                           listing no or several entries), no `ci`, or a date or dose number a
                           rule needs is missing or off its form
- `kind-not-accepted`      the entry's kind (vaccination, test, recovery) is not in `accept`
- `disease-not-accepted`   `tg` differs from `target_disease` (when that is set)
- vaccination: `product-not-accepted` (`mp` not in `products`, when that is set),
  `vaccination-incomplete` (`dn < sd` while `vaccination_complete`), `vaccination-too-recent` (fewer than
  `vaccination_min_days` since `dt`, which covers a `dt` in the future), `vaccination-too-old` (more than
  `vaccination_max_days` since `dt`, when that is not 0)
- test: `test-type-not-accepted` (`tt` not in `test_types`), `test-positive` (`tr` is not
  `test_result_negative`), `test-in-future` (sample taken after `now` + `skew_s`), `test-too-old`
  (sample taken more than `test_max_age_h` hours before `now`)
- recovery: `recovery-not-yet-valid` (today before `df`), `recovery-expired` (today after `du`; a
  `du` before `df` fails one of the two),
  `recovery-too-old` (more than `recovery_max_days` since `fr`, when that is not 0), `recovery-in-future`
  (`fr` after today)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from .dcc import HealthEntry, Recovery, Test, Vaccination, read_entry

if TYPE_CHECKING:  # the rules read the config section's values; codes/ never imports config at run time
    from ..config import DccConfig

OK = "ok"
UNREADABLE = "entry-unreadable"


def evaluate(dgc: Any, rules: DccConfig, now: float) -> str:
    """`OK`, or the name of the first rule the eu_dgc_v1 map `dgc` fails at `now` (seconds since 1970)."""
    return evaluate_entry(read_entry(dgc), rules, now)


def evaluate_entry(entry: HealthEntry | None, rules: DccConfig, now: float) -> str:
    """The same as `evaluate`, on an entry `dcc` already read (None: no single readable entry)."""
    if entry is None:
        return UNREADABLE
    if entry.kind not in rules.accept:
        return "kind-not-accepted"
    if rules.target_disease and entry.disease != rules.target_disease:
        return "disease-not-accepted"
    if isinstance(entry, Vaccination):
        return _vaccination(entry, rules, _today(now))
    if isinstance(entry, Test):
        return _test(entry, rules, now)
    return _recovery(entry, rules, _today(now))


def _today(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def _vaccination(entry: Vaccination, rules: DccConfig, today: date) -> str:
    if rules.products and entry.product not in rules.products:
        return "product-not-accepted"
    if rules.vaccination_complete:
        if entry.dose is None or entry.doses is None:
            return UNREADABLE
        # A booster is written dn > sd (3/2) by some issuers and dn = sd (3/3) by others; both count.
        if entry.dose < entry.doses:
            return "vaccination-incomplete"
    if entry.date is None:
        return UNREADABLE
    days = (today - entry.date).days
    if days < rules.vaccination_min_days:
        return "vaccination-too-recent"
    if rules.vaccination_max_days and days > rules.vaccination_max_days:
        return "vaccination-too-old"
    return OK


def _test(entry: Test, rules: DccConfig, now: float) -> str:
    if entry.test_type not in rules.test_types:
        return "test-type-not-accepted"
    if entry.result != rules.test_result_negative:
        return "test-positive"
    if entry.sampled is None:
        return UNREADABLE
    age_s = now - entry.sampled.timestamp()
    if age_s < -rules.skew_s:
        return "test-in-future"
    if age_s > rules.test_max_age_h * 3600:
        return "test-too-old"
    return OK


def _recovery(entry: Recovery, rules: DccConfig, today: date) -> str:
    if entry.valid_from is None or entry.valid_until is None or entry.first_positive is None:
        return UNREADABLE
    if today < entry.valid_from:
        return "recovery-not-yet-valid"
    if today > entry.valid_until:
        return "recovery-expired"
    days = (today - entry.first_positive).days
    if rules.recovery_max_days and days > rules.recovery_max_days:
        return "recovery-too-old"
    if days < 0:
        return "recovery-in-future"
    return OK
