"""The GCP target's settings and the image and instance resources it asks Compute Engine for (no
cloud needed): every bad input is one line with file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.build.manifest import Manifest
from crust.cloud.gcp import client as gcc
from crust.cloud.gcp.launch import instance_body, resource_path
from crust.cloud.gcp.settings import DEFAULT_NAME, check_for_launch, check_for_upload, image_name
from crust.cloud.gcp.upload import GUEST_OS_FEATURES, crust_labels, image_body, label_value
from crust.cloud.targets import load_target
from crust.define.project import Project
from crust.errors import UserError
from tests.unit.test_targets import write

DIGEST = "AB" * 32


def gcp_target(project: Path):  # type: ignore[no-untyped-def]
    return load_target(Project.at(project), "demo", "gcp")


def test_defaults(project: Path) -> None:
    write(project, "")
    target = gcp_target(project)
    assert (target.project, target.bucket, target.prefix, target.family, target.zone) == ("", "", "crust/", "", "")
    assert (target.composite_threshold, target.composite_parts, target.machine_type, target.ssh_user) == (256, 8, "e2-small", "admin")
    assert target.name == DEFAULT_NAME and target.storage_endpoint == target.compute_endpoint == ""


def test_settings_from_targets_toml_and_the_appliance(project: Path) -> None:
    write(
        project,
        '\n[targets.gcp]\nzone = "europe-west1-b"\ncomposite_threshold = "1GiB"\n',
        shared='[gcp]\nproject = "my-project-1"\nbucket = "crust.images"\nzone = "us-east1-c"\ncomposite_threshold = 0\n',
    )
    target = gcp_target(project)
    assert (target.project, target.bucket, target.zone, target.composite_threshold) == ("my-project-1", "crust.images", "europe-west1-b", 1024)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('project = "My_Project"', "is not a project id"),
        ('project = "ab"', "is not a project id"),
        ('bucket = "UPPER"', "is not a bucket name"),
        ('bucket = "a..b"', "is not a bucket name"),
        ('prefix = "images"', "folders ending in /"),
        ('prefix = "../up/"', "folders ending in /"),
        ('zone = "europe-west1"', "is not a zone"),
        ('family = "Crust_Family"', "lower-case letters, digits and hyphens"),
        ('labels = { crust-appliance = "x" }', "are set by Crust"),
        ('labels = { Team = "web" }', "lower-case letters, digits"),
        ('labels = { team = "Web" }', "lower-case letters, digits"),
        ("labels = { team = 1 }", "expected a string value"),
        ('composite_threshold = "a lot"', "is not a size"),
        ("composite_parts = 1", "2 to 32"),
        ("composite_parts = 33", "2 to 32"),
        ('storage_endpoint = "localhost:9023"', "is not an http(s) URL"),
        ('compute_endpoint = "ftp://x"', "is not an http(s) URL"),
        ('machine_type = "e2 small"', "is not a name or resource path"),
        ('name = "{appliance}-{date}"', "unknown field {date}"),
        ('credentials = "key.json"', "unknown key 'targets.gcp.credentials'"),
    ],
)
def test_bad_settings(project: Path, text: str, words: str) -> None:
    write(project, f"\n[targets.gcp]\n{text}\n")
    with pytest.raises(UserError) as err:
        gcp_target(project)
    assert words in err.value.one_line()
    assert err.value.file == str(project / "appliances" / "demo.toml") and err.value.line == 8
    assert "(fix: " in err.value.one_line()


def test_upload_needs_a_bucket_and_launch_a_zone(project: Path) -> None:
    write(project, "")
    with pytest.raises(UserError, match='set bucket = "NAME"'):
        check_for_upload(gcp_target(project))
    with pytest.raises(UserError, match="set zone = "):
        check_for_launch(gcp_target(project))


def test_image_resource(project: Path) -> None:
    write(project, '\n[targets.gcp]\nfamily = "crust-demo"\nlabels = { team = "web" }\n')
    manifest = Manifest("demo", version="1.0", build_id="FE6262b53ca7", distribution="debian-13")
    body = image_body(gcp_target(project), manifest, DIGEST, "gs://b/crust/x.tar.gz")
    assert body["name"] == "crust-demo-1-0-" + DIGEST[:12].lower()
    assert body["rawDisk"] == {"source": "gs://b/crust/x.tar.gz"} and body["family"] == "crust-demo"
    assert [f["type"] for f in body["guestOsFeatures"]] == list(GUEST_OS_FEATURES) == ["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"]
    assert body["labels"] == {"team": "web", gcc.LABEL_APPLIANCE: "demo", gcc.LABEL_DIGEST: DIGEST[:63], gcc.LABEL_BUILD: "fe6262b53ca7"}
    assert f"sha256:{DIGEST}" in body["description"], "the whole digest, where a label holds 63 characters"


@pytest.mark.parametrize(("text", "value"), [("wsgi", "wsgi"), ("Moksha.Web", "moksha-web"), ("a" * 70, "a" * 63), ("x y/z", "x-y-z")])
def test_label_values(text: str, value: str) -> None:
    assert label_value(text) == value


def test_an_image_name_compute_engine_refuses_is_one_line(project: Path) -> None:
    write(project, '\n[targets.gcp]\nname = "{digest}-{appliance}"\n')
    with pytest.raises(UserError, match="starting with a letter") as err:
        image_name(gcp_target(project), Manifest("demo", version="1.0"), "0" * 64)
    assert "change name in [targets.gcp]" in err.value.one_line()


def test_instance_resource(project: Path) -> None:
    write(project, '\n[targets.gcp]\nzone = "europe-west1-b"\nnetwork = "crust-net"\nsubnetwork = "crust-sub"\nssh_user = "ops"\n')
    target = gcp_target(project)
    session = gcc.Session("my-project-1", None, None, "", "")
    labels = crust_labels(target, Manifest("demo", version="1.0", build_id="b1"), DIGEST)
    body = instance_body(target, session, "demo-0a1b2c3d", "crust-demo-1", "ssh-ed25519 AAAA k", "#cloud-config\n", labels)
    assert body["machineType"] == "zones/europe-west1-b/machineTypes/e2-small"
    assert body["disks"][0]["initializeParams"] == {"sourceImage": "projects/my-project-1/global/images/crust-demo-1"}
    [nic] = body["networkInterfaces"]
    assert nic["network"] == "projects/my-project-1/global/networks/crust-net"
    assert nic["subnetwork"] == "projects/my-project-1/regions/europe-west1/subnetworks/crust-sub" and nic["nicType"] == "GVNIC"
    assert body["metadata"]["items"] == [{"key": "ssh-keys", "value": "ops:ssh-ed25519 AAAA k"}, {"key": "user-data", "value": "#cloud-config\n"}]


def test_a_resource_path_is_kept() -> None:
    assert resource_path("projects/p/global/networks/n", "networks", "q") == "projects/p/global/networks/n"


class FakeCredentials:
    """What google.auth.default returns, as far as Crust uses it: refresh() sets a token."""

    def __init__(self) -> None:
        self.token: str | None = None

    def refresh(self, request: object) -> None:
        self.token = "ya29.crust-test-token-0123456789abcdef"


def test_access_tokens_are_never_printed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth

    from crust.redact import redact

    credentials = FakeCredentials()
    monkeypatch.setattr(google.auth, "default", lambda scopes: (credentials, "adc-project-1"))
    write(project, '\n[targets.gcp]\nbucket = "b-images"\n')
    session = gcc.connect(gcp_target(project))
    assert session.project == "adc-project-1" and session.compute_credentials is credentials
    credentials.refresh(None)
    assert credentials.token and credentials.token not in redact(f"Authorization: Bearer {credentials.token}")


def test_no_credentials_is_one_line_naming_the_fix(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth import exceptions

    def missing(scopes: object) -> None:
        raise exceptions.DefaultCredentialsError("Your default credentials were not found.\nTo set up ADC, see https://example")

    monkeypatch.setattr(google.auth, "default", missing)
    write(project, '\n[targets.gcp]\nbucket = "b-images"\n')
    with pytest.raises(UserError) as err:
        gcc.connect(gcp_target(project))
    assert err.value.one_line().count("\n") == 0 and "gcloud auth application-default login" in err.value.one_line()


def test_an_endpoint_means_anonymous_credentials_and_a_project(project: Path) -> None:
    write(project, '\n[targets.gcp]\nstorage_endpoint = "http://127.0.0.1:9023"\ncompute_endpoint = "http://127.0.0.1:9024"\n')
    with pytest.raises(UserError, match="no Google Cloud project"):
        gcc.connect(gcp_target(project))
    write(project, '\n[targets.gcp]\nproject = "p-test-1"\nstorage_endpoint = "http://127.0.0.1:9023"\ncompute_endpoint = "http://127.0.0.1:9024"\n')
    session = gcc.connect(gcp_target(project))
    assert type(session.storage_credentials).__name__ == type(session.compute_credentials).__name__ == "AnonymousCredentials"
