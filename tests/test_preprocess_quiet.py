"""transformers' load noise stays out of the terminal; its settings are restored afterwards."""


def test_quiet_transformers_restores_the_settings():
    from transformers.utils import logging as hf_logging

    from emocast.preprocess.quiet import quiet_transformers

    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    with quiet_transformers():
        assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before
