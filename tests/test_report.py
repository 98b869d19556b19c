"""Verdicts: strict under the tests, readable for a reader who changed the parameters."""

import pytest

from ftutils import report


def test_failing_verdict_raises_in_strict_mode(monkeypatch):
    monkeypatch.setenv(report.STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="NOT CONFIRMED with these parameters: claim"):
        report.verdict("claim", False, "evidence")


def test_failing_verdict_prints_in_reader_mode(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    assert report.verdict("claim", False, "0.5 vs 0.6") is False
    assert capsys.readouterr().out == "NOT CONFIRMED with these parameters: claim (0.5 vs 0.6)\n"


def test_confirmed_verdict_prints_no_numbers(capsys):
    assert report.verdict("claim", True, "0.5 vs 0.6") is True
    assert capsys.readouterr().out == "CONFIRMED: claim\n"


def test_exceeds_needs_the_mean_difference_above_margin_and_spread(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    assert report.exceeds("a beats b", [0.80, 0.82, 0.81], [0.70, 0.71, 0.72], margin=0.05)
    # mean difference 0.04 below the margin 0.05
    assert not report.exceeds("a beats b", [0.74, 0.75, 0.76], [0.70, 0.71, 0.72], margin=0.05)
    # mean difference 0.03 above the margin but below its own spread (0.07)
    assert not report.exceeds("a beats b", [0.80, 0.70, 0.80], [0.70, 0.74, 0.77], margin=0.0)
    out = capsys.readouterr().out
    assert out.count("NOT CONFIRMED") == 2
    assert "needed > 0.050" in out


def test_exceeds_refuses_fewer_than_three_seeds():
    with pytest.raises(ValueError, match="at least 3 seeds"):
        report.exceeds("a beats b", [0.9, 0.9], [0.1, 0.1], margin=0.0)


def test_over_seeds_prints_mean_and_sample_spread():
    assert report.over_seeds([0.1, 0.2, 0.3]) == "0.200 ± 0.100 (3 seeds)"


def test_mean_interval_is_mean_plus_minus_z_standard_errors():
    low, high = report.mean_interval([0.1, 0.2, 0.3, 0.4], z=2.0)
    # mean 0.25, sample sd 0.1291, standard error 0.0645
    assert low == pytest.approx(0.25 - 2 * 0.129099 / 2, abs=1e-5)
    assert high == pytest.approx(0.25 + 2 * 0.129099 / 2, abs=1e-5)
    with pytest.raises(ValueError, match="at least 3"):
        report.mean_interval([0.1, 0.2])


def test_mean_above_and_below_use_the_bound_not_the_mean(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    tight = [0.10, 0.11, 0.09, 0.10, 0.10]  # mean 0.10, bound about 0.10 +- 0.006
    loose = [0.30, -0.10, 0.10, 0.25, -0.05]  # mean 0.10, bound about 0.10 +- 0.16
    assert report.mean_above("gain", tight, margin=0.05)
    assert not report.mean_above("gain", loose, margin=0.05)  # the mean clears it, the bound not
    assert report.mean_below("no gain of 0.15", tight, margin=0.15)
    assert not report.mean_below("no gain of 0.15", loose, margin=0.15)
    out = capsys.readouterr().out
    assert out.count("NOT CONFIRMED") == 2
    assert "needed low end > 0.050" in out and "needed high end < 0.150" in out


@pytest.mark.parametrize(
    ("probability", "df", "expected"),
    [(0.95, 2, 2.919986), (0.95, 4, 2.131847), (0.95, 7, 1.894579), (0.975, 9, 2.262157)],
)
def test_t_quantile_matches_the_tables(probability, df, expected):
    assert report.t_quantile(probability, df) == pytest.approx(expected, abs=1e-5)


def test_below_uses_the_upper_confidence_bound(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    values = [0.0, 0.01, 0.02]  # mean 0.01, sd 0.01: bound 0.01 + 2.92 * 0.01 / sqrt(3) = 0.0269
    assert report.upper_bound(values) == pytest.approx(0.01 + 2.919986 * 0.01 / 3**0.5, abs=1e-6)
    assert report.below("small", values, 0.03) is True
    assert report.below("small", values, 0.02) is False  # the mean is below, its bound is not
    assert "upper 95% bound 0.027, needed < 0.020" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 3"):
        report.upper_bound([0.0, 0.01])
