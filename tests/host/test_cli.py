"""`unidit` command-line arguments that are refused before anything runs."""
import pytest

from unidit.runtime.host.cli import main


@pytest.mark.parametrize("argv, message", [
    (["bench", "cache", "--threshold", "0"], "--threshold must be a finite number > 0"),
    (["bench", "cache", "--threshold", "nan"], "--threshold must be a finite number > 0"),
    (["bench", "render", "--threshold", "0.05"], "--threshold applies to `unidit bench cache` only"),
    (["bench", "cache", "--family", "wan"], "--family and --blocks-resident apply to `unidit bench forward` only"),
    (["bench", "render", "--blocks-resident", "2"], "--family and --blocks-resident apply to `unidit bench forward`"),
])
def test_bench_options_that_do_not_fit_are_refused_with_the_reason(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
