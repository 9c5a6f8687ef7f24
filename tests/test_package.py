import bitrix_threaded


def test_version_is_a_string():
    assert isinstance(bitrix_threaded.__version__, str)
    assert bitrix_threaded.__version__.count(".") == 2
