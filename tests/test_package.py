import bitrix_threaded


def test_version_is_a_string():
    assert isinstance(bitrix_threaded.__version__, str)
    assert bitrix_threaded.__version__.count(".") == 2


def test_public_names_are_exported_and_sorted():
    names = bitrix_threaded.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(bitrix_threaded, name), name
