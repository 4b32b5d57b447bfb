"""utils.base.errors: messages read as sentences."""
from utils.base.errors import counted


def test_counted_puts_the_noun_in_the_right_number():
    assert counted(1, "class") == "1 class" and counted(3, "class") == "3 classes"
    assert counted(0, "name") == "0 names" and counted(1, "name") == "1 name"
    assert counted(2, "box", "boxes") == "2 boxes"
