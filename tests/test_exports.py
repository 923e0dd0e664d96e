import convo


def test_all_is_sorted_and_complete():
    assert convo.__all__ == sorted(convo.__all__)
    for name in convo.__all__:
        assert hasattr(convo, name), name


def test_errors_share_one_base():
    for name in convo.__all__:
        obj = getattr(convo, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, convo.ConvoError), name


def test_version():
    assert isinstance(convo.__version__, str) and convo.__version__.count(".") == 2
