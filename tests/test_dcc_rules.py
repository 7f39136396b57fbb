"""The venue's DCC rule set: each rule on its own, its bounds, and its config section."""

import dataclasses

import pytest
from codes_helpers import NOW
from dcc_helpers import DAY, REMOVE, day, dgc, moment

from edge_sentry import config
from edge_sentry.codes.dcc_rules import OK, UNREADABLE, evaluate
from edge_sentry.config import DccConfig
from edge_sentry.errors import ConfigError

RULES = DccConfig()
HOUR = 3600


def rules(**changes) -> DccConfig:
    return dataclasses.replace(RULES, **changes)


def test_the_default_fixtures_pass_the_default_rules() -> None:
    for kind in ("vaccination", "test", "pcr", "recovery"):
        assert evaluate(dgc(kind), RULES, NOW) == OK


# -- kinds and disease ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vaccination", "test", "recovery"])
def test_a_kind_left_out_of_accept_fails(kind: str) -> None:
    others = [k for k in ("vaccination", "test", "recovery") if k != kind]
    assert evaluate(dgc(kind), rules(accept=others), NOW) == "kind-not-accepted"
    assert evaluate(dgc(kind), rules(accept=[kind]), NOW) == OK


def test_another_disease_fails_unless_any_is_accepted() -> None:
    influenza = dgc(tg="6142004")
    assert evaluate(influenza, RULES, NOW) == "disease-not-accepted"
    assert evaluate(influenza, rules(target_disease=""), NOW) == OK


# -- vaccination ---------------------------------------------------------------------------------


def test_complete_series_and_boosters_pass_an_incomplete_one_fails() -> None:
    assert evaluate(dgc(dn=2, sd=2), RULES, NOW) == OK
    assert evaluate(dgc(dn=3, sd=3), RULES, NOW) == OK
    assert evaluate(dgc(dn=3, sd=2), RULES, NOW) == OK
    assert evaluate(dgc(dn=1, sd=2), RULES, NOW) == "vaccination-incomplete"
    assert evaluate(dgc(dn=1, sd=2), rules(vaccination_complete=False), NOW) == OK


def test_a_dose_counts_from_the_14th_day() -> None:
    assert evaluate(dgc(dt=day(-13)), RULES, NOW) == "vaccination-too-recent"
    assert evaluate(dgc(dt=day(-14)), RULES, NOW) == OK
    assert evaluate(dgc(dt=day(0)), rules(vaccination_min_days=0), NOW) == OK
    assert evaluate(dgc(dt=day(1)), rules(vaccination_min_days=0), NOW) == "vaccination-too-recent"


def test_a_dose_older_than_the_maximum_fails_and_zero_means_no_maximum() -> None:
    assert evaluate(dgc(dt=day(-270)), RULES, NOW) == OK
    assert evaluate(dgc(dt=day(-271)), RULES, NOW) == "vaccination-too-old"
    assert evaluate(dgc(dt=day(-3000)), rules(vaccination_max_days=0), NOW) == OK


def test_days_are_utc_calendar_days() -> None:
    midnight = NOW - NOW % DAY  # 00:00 UTC of NOW's day
    assert evaluate(dgc(dt=day(-14, midnight)), RULES, midnight) == OK
    assert evaluate(dgc(dt=day(-14, midnight)), RULES, midnight - 1) == "vaccination-too-recent"


def test_products_limit_vaccines_only_when_listed() -> None:
    assert evaluate(dgc(mp="EU/1/20/1528"), rules(products=["EU/1/20/1507"]), NOW) == "product-not-accepted"
    assert evaluate(dgc(mp="EU/1/20/1528"), rules(products=["EU/1/20/1528"]), NOW) == OK
    assert evaluate(dgc(mp="Sputnik-V"), RULES, NOW) == OK


# -- test ----------------------------------------------------------------------------------------


def test_a_negative_test_passes_a_positive_one_fails() -> None:
    assert evaluate(dgc("test", tr="260415000"), RULES, NOW) == OK
    assert evaluate(dgc("test", tr="260373001"), RULES, NOW) == "test-positive"


def test_a_test_older_than_the_maximum_fails() -> None:
    assert evaluate(dgc("test", sc=moment(-48 * HOUR)), RULES, NOW) == OK
    assert evaluate(dgc("test", sc=moment(-48 * HOUR - 1)), RULES, NOW) == "test-too-old"
    assert evaluate(dgc("test", sc=moment(-30 * HOUR)), rules(test_max_age_h=24), NOW) == "test-too-old"


def test_a_sample_from_the_future_fails_beyond_the_skew() -> None:
    assert evaluate(dgc("test", sc=moment(30)), RULES, NOW) == OK
    assert evaluate(dgc("test", sc=moment(31)), RULES, NOW) == "test-in-future"


def test_only_listed_test_types_pass() -> None:
    rat_only = rules(test_types=["LP217198-3"])
    assert evaluate(dgc("pcr"), rat_only, NOW) == "test-type-not-accepted"
    assert evaluate(dgc("test"), rat_only, NOW) == OK
    assert evaluate(dgc("test", tt="94309-2"), RULES, NOW) == "test-type-not-accepted"


def test_the_rule_order_reports_the_type_before_the_result() -> None:
    assert evaluate(dgc("test", tt="other", tr="260373001"), RULES, NOW) == "test-type-not-accepted"


# -- recovery ------------------------------------------------------------------------------------


def test_recovery_within_its_window_passes() -> None:
    assert evaluate(dgc("recovery", fr=day(-180), df=day(-169), du=day(0)), RULES, NOW) == OK


def test_recovery_before_df_or_after_du_fails() -> None:
    early = dgc("recovery", fr=day(-5), df=day(6), du=day(175))
    assert evaluate(early, RULES, NOW) == "recovery-not-yet-valid"
    late = dgc("recovery", fr=day(-100), df=day(-89), du=day(-1))
    assert evaluate(late, RULES, NOW) == "recovery-expired"


def test_recovery_beyond_the_venues_own_limit_fails_even_within_du() -> None:
    generous_issuer = dgc("recovery", fr=day(-181), df=day(-170), du=day(100))
    assert evaluate(generous_issuer, RULES, NOW) == "recovery-too-old"
    assert evaluate(generous_issuer, rules(recovery_max_days=0), NOW) == OK
    assert evaluate(generous_issuer, rules(recovery_max_days=365), NOW) == OK


def test_a_first_positive_test_in_the_future_fails() -> None:
    assert evaluate(dgc("recovery", fr=day(1), df=day(-1), du=day(100)), RULES, NOW) == "recovery-in-future"


# -- content the rules cannot read is a rule failure, and only for the rules that read it ------------


@pytest.mark.parametrize(
    "body",
    [
        dgc(dt=REMOVE),
        dgc(dn="two"),
        dgc(dn=0),
        dgc(sd=10),
        dgc("test", sc=12),
        dgc("recovery", du="soon"),
        dgc("recovery", fr=None),
        {"ver": "1.3.0"},
        dgc() | {"v": []},
        dgc() | {"v": dgc()["v"] * 2},
        dgc() | {"r": dgc("recovery")["r"]},
        [],
    ],
)
def test_content_a_rule_needs_and_cannot_read_is_unreadable(body) -> None:
    for venue_rules in (RULES, rules(vaccination_min_days=0, target_disease="")):
        assert evaluate(body, venue_rules, NOW) == UNREADABLE


def test_a_field_no_configured_rule_reads_is_tolerated() -> None:
    assert evaluate(dgc(dn=0, sd=10), rules(vaccination_complete=False), NOW) == OK
    assert evaluate(dgc(dn="two"), rules(vaccination_complete=False), NOW) == OK
    assert evaluate(dgc(mp=""), RULES, NOW) == OK
    assert evaluate(dgc(mp=""), rules(products=["EU/1/20/1528"]), NOW) == "product-not-accepted"
    assert evaluate(dgc(tg=""), rules(target_disease=""), NOW) == OK
    assert evaluate(dgc(tg=""), RULES, NOW) == "disease-not-accepted"


def test_empty_texts_never_match_an_accepted_value() -> None:
    assert evaluate(dgc("test", tr=""), RULES, NOW) == "test-positive"
    assert evaluate(dgc("test", tt=""), RULES, NOW) == "test-type-not-accepted"


def test_a_recovery_valid_until_before_it_is_valid_from_never_passes() -> None:
    for offset in range(-3, 4):
        body = dgc("recovery", fr=day(-20), df=day(offset), du=day(offset - 1))
        assert evaluate(body, RULES, NOW) in ("recovery-not-yet-valid", "recovery-expired")


def test_fields_no_rule_reads_are_not_required() -> None:
    body = dgc(vp=REMOVE, ma=REMOVE, co=REMOVE, **{"is": REMOVE})
    del body["nam"], body["dob"], body["ver"]
    assert evaluate(body, RULES, NOW) == OK


# -- the [dcc] config section --------------------------------------------------------------------


def test_the_defaults_are_documented_values() -> None:
    assert config.to_mapping(config.Config())["dcc"] == {
        "accept": ["vaccination", "test", "recovery"],
        "skew_s": 30,
        "target_disease": "840539006",
        "vaccination_complete": True,
        "vaccination_min_days": 14,
        "vaccination_max_days": 270,
        "products": [],
        "test_types": ["LP6464-4", "LP217198-3"],
        "test_result_negative": "260415000",
        "test_max_age_h": 48,
        "recovery_max_days": 180,
    }


def test_a_toml_rule_set_is_loaded(tmp_path) -> None:
    path = tmp_path / "sentry.toml"
    path.write_text(
        '[dcc]\naccept = ["test"]\ntest_max_age_h = 24\ntest_types = ["LP217198-3"]\n'
        'products = ["EU/1/20/1528", "EU/1/20/1507"]\n',
        encoding="utf-8",
    )
    loaded = config.load(path).dcc
    assert loaded.accept == ["test"]
    assert (loaded.test_max_age_h, loaded.test_types) == (24, ["LP217198-3"])
    assert loaded.products == ["EU/1/20/1528", "EU/1/20/1507"]
    assert loaded.vaccination_min_days == 14  # untouched keys keep their defaults


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"accept": ["vaccine"]}, "dcc.accept"),
        ({"accept": ["test", "test"]}, "dcc.accept"),
        ({"accept": "test"}, "dcc.accept"),
        ({"vaccination_min_days": -1}, "dcc.vaccination_min_days"),
        ({"vaccination_complete": "yes"}, "dcc.vaccination_complete"),
        ({"test_max_age_h": 0}, "dcc.test_max_age_h"),
        ({"test_types": [""]}, "dcc.test_types"),
        ({"test_result_negative": " "}, "dcc.test_result_negative"),
        ({"products": [1]}, "dcc.products"),
        ({"skew_s": 7200}, "dcc.skew_s"),
        ({"max_days": 5}, "dcc.max_days"),
    ],
)
def test_a_bad_rule_set_is_refused_by_key_path(section: dict, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping({"dcc": section})
    assert [p for p, _ in caught.value.problems] == [path]


def test_an_empty_accept_list_is_a_valid_config() -> None:
    assert config.from_mapping({"dcc": {"accept": []}}).dcc.accept == []
