"""The divergence rule: one definition, checked on the cases it must separate."""
import math

import numpy as np
import pytest

from netdyn.maps.divergence import DivergenceCheck, DivergenceRule, divergence_reason


class TestDivergenceReason:
    def test_bounded_series_is_sound(self):
        loss = 2.3 * np.exp(-np.linspace(0, 5, 200))
        norm = 10 + np.sin(np.arange(200))
        assert divergence_reason(loss, norm=norm) == ("", -1)

    def test_cross_entropy_blow_up_is_divergence_although_finite(self):
        loss = np.array([2.3, 40.0, 900.0, 2.0e5, 1.9e5])
        reason, index = divergence_reason(loss, norm=np.full(5, 10.0))
        assert reason.startswith("loss blow-up") and index == 3

    def test_non_finite_loss_or_state(self):
        assert divergence_reason(np.array([1.0, 2.0, np.nan]), norm=None)[0].startswith("non-finite")
        assert divergence_reason(np.array([1.0, np.inf]), norm=None) [1] == 1
        assert divergence_reason(None, norm=np.array([1.0, np.inf]))[0].startswith("non-finite")

    def test_unbounded_parameter_growth(self):
        norm = 10.0 * 1.5 ** np.arange(30)
        reason, index = divergence_reason(None, norm=norm)
        assert reason.startswith("unbounded growth")
        assert index == int(np.ceil(np.log(1e3) / np.log(1.5)))  # first norm above 1e3 x 10

    def test_floors_keep_small_starts_sound(self):
        # logistic map from 1e-4 settling at 0.6: grew 6000x from x0, never diverged
        assert divergence_reason(np.full(3, np.nan), norm=np.array([1e-4, 0.3, 0.6])) == ("", -1)

    def test_map_without_loss_checks_the_norm_only(self):
        check = DivergenceCheck()
        assert check.check(math.nan, 1.0) == ""
        assert check.check(math.nan, 999.0) == ""
        assert check.check(math.nan, 1001.0).startswith("unbounded growth")

    def test_norm_alone_ignores_the_loss(self):
        check = DivergenceCheck()
        assert check.check(2.0, 5.0) == ""
        assert check.check_norm(4000.0) == ""  # a NaN loss here would read as non-finite
        assert check.check_norm(5001.0).startswith("unbounded growth")
        assert check.check_norm(math.inf).startswith("non-finite")

    def test_norm_limit_is_the_rules_boundary(self):
        check = DivergenceCheck()
        assert math.isnan(check.norm_limit)  # no reference yet
        assert check.check_norm(2.0) == "" and check.norm_limit == 2000.0
        assert check.check_norm(check.norm_limit) == ""
        assert check.check_norm(math.nextafter(check.norm_limit, math.inf)).startswith("unbounded growth")

    def test_custom_rule(self):
        rule = DivergenceRule(loss_factor=10.0)
        assert divergence_reason(np.array([1.0, 11.0]), norm=None, rule=rule)[1] == 1

    @pytest.mark.parametrize("kwargs", [{"loss_factor": 1.0}, {"norm_factor": math.inf}, {"loss_floor": 0.0}])
    def test_bad_rule(self, kwargs):
        with pytest.raises(ValueError, match="DivergenceRule"):
            DivergenceRule(**kwargs)

    def test_needs_a_series(self):
        with pytest.raises(ValueError, match="divergence_reason"):
            divergence_reason()
