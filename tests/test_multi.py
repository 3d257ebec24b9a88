"""ilphttp.multi: a child's URL from a multi account's template, a child's address (pure)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.multi import (
    HOST,
    PATH,
    PORT,
    ChildNameError,
    ChildUrlTemplate,
    child_address,
    child_name,
)


class PlaceTests(SynchronousTestCase):
    def test_where_the_name_goes(self) -> None:
        cases = [
            ("http://127.0.0.1:%/", PORT),
            ("http://[::1]:%/", PORT),
            ("http://127.0.0.1:80%/", PORT),
            ("https://%.peers.example/ilp", HOST),
            ("http://%:8000/", HOST),
            ("http://[::1]/%", PATH),
            ("http://h:8000/children/%/ilp", PATH),
            ("http://h/?child=%", PATH),
            ("http://h:8000/", None),
        ]
        for template, place in cases:
            self.assertEqual(ChildUrlTemplate(template).place, place, template)

    def test_other_delimiter_first_occurrence_only(self) -> None:
        template = ChildUrlTemplate("http://h/$/$", delimiter="$")
        self.assertEqual(template.url_for("bob"), "http://h/bob/$")

    def test_the_user_part_is_refused(self) -> None:
        self.assertRaises(ValueError, ChildUrlTemplate, "http://%@h/")


class UrlForTests(SynchronousTestCase):
    def test_port(self) -> None:
        template = ChildUrlTemplate("http://127.0.0.1:%/", port_range=(1024, 65535))
        self.assertEqual(template.url_for("7790"), "http://127.0.0.1:7790/")
        fullwidth = "\uff17\uff17\uff19\uff10"  # digits, but not ASCII ones
        for name in ("alice", "4_5769", "80", "65536", "0x1f90", "-1", fullwidth):
            with self.assertRaises(ChildNameError, msg=name) as caught:
                template.url_for(name)
            self.assertNotIn("127.0.0.1", str(caught.exception))  # no internal detail
        # One port, one name: "07790" would reach child 7790 under another address.
        for name in ("07790", "007790"):
            with self.assertRaises(ChildNameError, msg=name) as caught:
                template.url_for(name)
            self.assertIn("it must be written without leading zeros", str(caught.exception))

    def test_port_suffix(self) -> None:
        template = ChildUrlTemplate("http://127.0.0.1:80%/")
        self.assertEqual(template.url_for("80"), "http://127.0.0.1:8080/")
        self.assertRaises(ChildNameError, template.url_for, "800")  # 80800

    def test_host(self) -> None:
        template = ChildUrlTemplate("https://%.peers.example/ilp")
        self.assertEqual(template.url_for("alice-1"), "https://alice-1.peers.example/ilp")
        for name in ("under_score", "tilde~", "-lead", "trail-", "a" * 64):
            self.assertRaises(ChildNameError, template.url_for, name)

    def test_path_takes_any_segment(self) -> None:
        template = ChildUrlTemplate("http://h:8000/children/%/ilp")
        for name in ("alice", "under_score", "tilde~", "7790", "a-b"):
            self.assertEqual(template.url_for(name), f"http://h:8000/children/{name}/ilp")

    def test_not_a_segment(self) -> None:
        template = ChildUrlTemplate("http://h/%")
        for name in ("", "a.b", "a b", "a/b", "ü"):
            self.assertRaises(ChildNameError, template.url_for, name)


class AddressTests(SynchronousTestCase):
    def test_child_name(self) -> None:
        self.assertEqual(child_name("test.hub", "test.hub.alice.x.y"), "alice")
        self.assertEqual(child_name("test.hub", "test.hub.alice"), "alice")
        self.assertIsNone(child_name("test.hub", "test.hubx.alice"))
        self.assertIsNone(child_name("test.hub", "test.hub"))
        self.assertIsNone(child_name("test.hub", "test.other.alice"))

    def test_child_address(self) -> None:
        self.assertEqual(child_address("test.hub", "alice"), "test.hub.alice")
        self.assertRaises(ChildNameError, child_address, "test.hub", "a b")
        self.assertRaises(ChildNameError, child_address, "test." + "h" * 1015, "alice")
