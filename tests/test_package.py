import types

import bitrix_threaded


def test_version_is_a_string():
    assert isinstance(bitrix_threaded.__version__, str)
    assert bitrix_threaded.__version__.count(".") == 2


def test_public_names_are_exported_and_sorted():
    names = bitrix_threaded.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(bitrix_threaded, name), name


def test_every_public_member_is_exported():
    # Submodules appear as attributes once imported; they are not members.
    members = sorted(
        name for name, value in vars(bitrix_threaded).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    )
    assert bitrix_threaded.__all__ == members


def test_public_classes_live_in_the_package():
    for name in bitrix_threaded.__all__:
        value = getattr(bitrix_threaded, name)
        if isinstance(value, type):
            assert value.__module__ == "bitrix_threaded", name


def test_what_users_receive_or_pass_is_exported():
    # CommandFailure comes inside BatchError.failures; Strategy subclasses go to strategy=.
    assert bitrix_threaded.CommandFailure.__name__ == "CommandFailure"
    assert issubclass(bitrix_threaded.IdRanges, bitrix_threaded.Strategy)


def test_internal_wiring_is_not_a_top_level_name():
    for name in ("Runner", "drive", "pack", "Transport", "Command", "encode_command"):
        assert not hasattr(bitrix_threaded, name), name
