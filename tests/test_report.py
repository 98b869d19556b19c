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


@pytest.mark.parametrize(
    ("probability", "df", "expected"),
    [(0.95, 2, 2.919986), (0.95, 4, 2.131847), (0.95, 7, 1.894579), (0.975, 9, 2.262157)],
)
def test_t_quantile_matches_the_tables(probability, df, expected):
    assert report.t_quantile(probability, df) == pytest.approx(expected, abs=1e-5)


def test_mean_interval_with_z_is_mean_plus_minus_z_standard_errors():
    low, high = report.mean_interval([0.1, 0.2, 0.3, 0.4], z=2.0)
    # mean 0.25, sample sd 0.1291, standard error 0.0645
    assert low == pytest.approx(0.25 - 2 * 0.129099 / 2, abs=1e-5)
    assert high == pytest.approx(0.25 + 2 * 0.129099 / 2, abs=1e-5)


def test_a_one_sided_95_percent_bound_is_the_end_of_the_90_percent_interval(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    values = [0.0, 0.01, 0.02]  # mean 0.01, sd 0.01: bound 0.01 + 2.92 * 0.01 / sqrt(3) = 0.0269
    assert report.mean_interval(values, 0.90)[1] == pytest.approx(0.01 + 2.919986 * 0.01 / 3**0.5)
    assert report.mean_bound("small", values, less_than=0.03, confidence=0.90) is True
    assert report.mean_bound("small", values, less_than=0.02, confidence=0.90) is False
    assert "90% interval of the mean [-0.007, +0.027]" in capsys.readouterr().out


def test_mean_bound_with_z_uses_the_bound_not_the_mean(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    tight = [0.10, 0.11, 0.09, 0.10, 0.10]  # mean 0.10, bound about 0.10 +- 0.006
    loose = [0.30, -0.10, 0.10, 0.25, -0.05]  # mean 0.10, bound about 0.10 +- 0.16
    assert report.mean_bound("gain", tight, more_than=0.05, z=2)
    assert not report.mean_bound("gain", loose, more_than=0.05, z=2)  # the mean clears it
    assert report.mean_bound("no gain of 0.15", tight, less_than=0.15, z=2)
    assert not report.mean_bound("no gain of 0.15", loose, less_than=0.15, z=2)
    out = capsys.readouterr().out
    assert out.count("NOT CONFIRMED") == 2 and "mean ± 2 SE [-0.058, +0.258]" in out


def test_t_quantile_matches_the_printed_97_5_percent_quantiles():
    # Student's t, 97.5 % quantiles as printed in every statistics table
    for df, printed in [(2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)]:
        assert report.t_quantile(0.975, df) == pytest.approx(printed, abs=2e-3)
    assert report.t_quantile(0.95, 4) == pytest.approx(2.132, abs=2e-3)
    assert report.t_quantile(0.975, 100_000) == pytest.approx(1.960, abs=2e-3)
    with pytest.raises(ValueError):
        report.t_quantile(0.4, 4)


def test_mean_interval_is_mean_plus_minus_t_standard_errors():
    values = [0.1, 0.2, 0.3, 0.4, 0.5]  # mean 0.3, sd 0.158, standard error 0.0707
    low, high = report.mean_interval(values)
    assert (low, high) == pytest.approx((0.3 - 2.776 * 0.07071, 0.3 + 2.776 * 0.07071), abs=1e-3)
    with pytest.raises(ValueError):
        report.mean_interval([0.1, 0.2])


def test_mean_bound_holds_only_when_the_whole_interval_clears_the_margin(monkeypatch, capsys):
    monkeypatch.delenv(report.STRICT_ENV, raising=False)
    clear = [0.08, 0.1, 0.12, 0.09, 0.11]
    assert report.mean_bound("above", clear, more_than=0.05)
    assert not report.mean_bound(
        "above", clear, more_than=0.09
    )  # the mean clears it, the interval not
    assert report.mean_bound("below", clear, less_than=0.15)
    assert not report.mean_bound("both", clear, more_than=0.0, less_than=0.11)
    assert "NOT CONFIRMED" in capsys.readouterr().out
    with pytest.raises(ValueError):
        report.mean_bound("nothing", clear)
    monkeypatch.setenv(report.STRICT_ENV, "1")
    with pytest.raises(AssertionError):
        report.mean_bound("above", [0.0, 0.1, -0.1, 0.05], more_than=0.0)
