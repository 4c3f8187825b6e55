"""Library log lines go to the report, not the terminal, unless --verbose echoes them; errors always print."""

import logging

import pytest

from trt_converters import library_logs


@pytest.mark.parametrize("module", [module for _, module in library_logs.GRAPHSURGEON_LOGGERS])
def test_graphsurgeon_warnings_are_kept_for_the_report(module, capfd):
    logger = pytest.importorskip(module).G_LOGGER
    with library_logs.captured() as lines:
        logger.warning("It looks like this model contains foldable nodes that produce large outputs: {...}")
        logger.info("an info line below the logger's severity")
    after = capfd.readouterr()
    assert "foldable nodes" not in after.out + after.err
    assert any("foldable nodes" in line for line in lines)
    assert not any("info line" in line for line in lines)
    logger.warning("printed again once the block is over")  # the logger's own printing is restored
    assert "printed again" in "".join(capfd.readouterr())


def test_echo_prints_what_it_keeps_and_root_warnings_are_kept(capfd):
    with library_logs.captured(echo=True) as lines:
        logging.getLogger().warning("3 ops are not supported in 'float16'")
    assert any("not supported in 'float16'" in line for line in lines)
    assert "not supported in 'float16'" in capfd.readouterr().err
