"""`build.py launch NAME` / `terminate NAME`: an instance from the AMI recorded in the manifest.

The instance gets #cloud-config user data: the target's cloud_config table plus an SSH public
key. Launched instances are remembered in the store (STORE/state/aws/NAME.json) so that
`terminate` knows what to stop; an instance that does not reach "running" is terminated.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from crust.build.manifest import Manifest
from crust.build.store import Store, write_atomic
from crust.cloud.aws import client as awsops
from crust.cloud.aws.settings import AwsTarget
from crust.cloud.aws.upload import recorded_ami
from crust.cloud.common import Undo, prefixed, require_first_boot_agent
from crust.cloud.common import ssh_public_key as common_ssh_public_key
from crust.cloud.common import user_data as common_user_data
from crust.errors import CloudError, Problem, UserError

USER_DATA_LIMIT = 16 * 1024


def ssh_public_key(target: AwsTarget, override: Path | None, home: Path | None = None) -> str:
    """The public key for the user data: --ssh-key, the target's ssh_key, or ~/.ssh/id_*.pub."""
    return common_ssh_public_key(target.ssh_key, override, home, table="targets.aws")


def user_data(key: str, cloud_config: Mapping[str, Any]) -> str:
    """#cloud-config with the target's settings and the key, within EC2's 16 KiB."""
    return common_user_data(key, cloud_config, limit=USER_DATA_LIMIT, cloud="EC2")


def run_params(target: AwsTarget, ami: str, data: str, tags: Mapping[str, str], instance_type: str | None, subnet: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ImageId": ami,
        "InstanceType": instance_type or target.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": data,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": awsops.aws_tags(tags)},
            {"ResourceType": "volume", "Tags": awsops.aws_tags(tags)},
        ],
        "ClientToken": str(uuid.uuid4()),
    }
    if subnet or target.subnet:
        params["SubnetId"] = subnet or target.subnet
    if target.security_groups:
        params["SecurityGroupIds"] = list(target.security_groups)
    return params


def state_path(store: Store, name: str) -> Path:
    return store.root / "state" / "aws" / f"{name}.json"


def read_state(store: Store, name: str) -> list[dict[str, Any]]:
    path = state_path(store, name)
    if not path.is_file():
        return []
    instances: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("instances", [])
    return instances


def write_state(store: Store, name: str, instances: list[dict[str, Any]]) -> None:
    path = state_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"appliance": name, "instances": instances}, indent=2, sort_keys=True))


def _describe(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    reservations = awsops.call(ec2, "describe_instances", instance_id, InstanceIds=[instance_id]).get("Reservations", [])
    for reservation in reservations:
        for instance in reservation.get("Instances", []):
            return dict(instance)
    return None


def _wait_state(ec2: Any, instance_id: str, want: str, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        instance = _describe(ec2, instance_id)
        state = (instance or {}).get("State", {}).get("Name")
        if want == "running" and state in ("shutting-down", "terminated", "stopping", "stopped"):
            reason = (instance or {}).get("StateReason", {}).get("Message", state)
            raise CloudError(f"instance {instance_id} is {state}: {reason}", hint="check the instance's console output in the EC2 console")
        return instance if state == want else None

    return awsops.wait_until(f"instance {instance_id} to be {want}", check, timeout, first_delay=1.0, max_delay=10.0)


def launch(
    target: AwsTarget,
    output: Path,
    store: Store,
    name: str,
    region: str | None = None,
    ssh_key: Path | None = None,
    instance_type: str | None = None,
    subnet: str | None = None,
    session: Any = None,
    stream: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Start an instance of NAME's recorded AMI and wait until it runs; returns its record."""

    def say(text: str) -> None:
        print(f"launch {name}: {text}", file=stream, flush=True)

    manifest = Manifest.load(output, name, verb="launch")
    require_first_boot_agent(manifest)
    key = ssh_public_key(target, ssh_key)
    data = user_data(key, target.cloud_config)
    aws = awsops.Aws(target, session)
    with prefixed(f"launch {name}"):
        aws.check_credentials()
        where = aws.region(region)
        ami = recorded_ami(manifest, where)
        if ami is None:
            raise UserError(f"no AMI of the current image is recorded for {where}", hint=f"run ./build.py upload {name} --target aws first")
        digest = str(manifest.raw_digest)
        tags = {
            "Name": f"{name}-{manifest.version}",
            **target.tags,
            awsops.TAG_APPLIANCE: name,
            awsops.TAG_VERSION: manifest.version,
            awsops.TAG_DIGEST: digest,
        }
        ec2 = aws.ec2(where)
        params = run_params(target, ami, data, tags, instance_type, subnet)
        started = awsops.call(ec2, "run_instances", ami, **params)["Instances"][0]
        instance_id = str(started["InstanceId"])
        undo = Undo(say)
        undo.push(f"instance {instance_id}", lambda: _terminate(ec2, instance_id))
        record = {
            "id": instance_id,
            "region": where,
            "ami": ami,
            "image_digest": digest,
            "launched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with store.lock(f"instances-{name}"):
            write_state(store, name, [*read_state(store, name), record])
        say(f"{instance_id} starting in {where} from {ami} ({params['InstanceType']})")
        try:
            running = _wait_state(ec2, instance_id, "running", target.wait_timeout)
        except BaseException:
            undo.run()
            with store.lock(f"instances-{name}"):
                write_state(store, name, [i for i in read_state(store, name) if i["id"] != instance_id])
            raise
        undo.commit()
    record["public_ip"] = running.get("PublicIpAddress") or ""
    record["private_ip"] = running.get("PrivateIpAddress") or ""
    record["address"] = record["public_ip"] or record["private_ip"]
    with store.lock(f"instances-{name}"):
        write_state(store, name, [record if i["id"] == instance_id else i for i in read_state(store, name)])
    return record


def terminate(
    target: AwsTarget,
    store: Store,
    name: str,
    instance_id: str | None = None,
    region: str | None = None,
    session: Any = None,
    stream: TextIO = sys.stderr,
) -> list[str]:
    """Terminate NAME's launched instances (or one of them) and wait until they are gone."""

    def say(text: str) -> None:
        print(f"terminate {name}: {text}", file=stream, flush=True)

    aws = awsops.Aws(target, session)
    with prefixed(f"terminate {name}"):
        aws.check_credentials()
        recorded = read_state(store, name)
        if instance_id is not None:
            chosen = [i for i in recorded if i["id"] == instance_id] or [_unrecorded(aws, name, instance_id, aws.region(region))]
        else:
            chosen = [i for i in recorded if region is None or i["region"] == region]
        if not chosen:
            raise UserError(f"no launched instance of {name} is recorded", hint=f"./build.py launch {name} starts one; --instance ID names one")
        done = []
        for instance in chosen:
            ec2 = aws.ec2(instance["region"])
            try:
                _terminate(ec2, instance["id"])
                _wait_state(ec2, instance["id"], "terminated", target.wait_timeout)
                say(f"{instance['id']} terminated")
            except Problem as exc:
                if awsops.error_code(exc) != "InvalidInstanceID.NotFound":
                    raise
                say(f"{instance['id']} no longer exists")
            done.append(instance["id"])
            with store.lock(f"instances-{name}"):
                write_state(store, name, [i for i in read_state(store, name) if i["id"] != instance["id"]])
    return done


def _terminate(ec2: Any, instance_id: str) -> None:
    awsops.call(ec2, "terminate_instances", instance_id, InstanceIds=[instance_id])


def _unrecorded(aws: awsops.Aws, name: str, instance_id: str, region: str) -> dict[str, Any]:
    """An instance not in the state file: only terminated if Crust launched it for NAME."""
    instance = _describe(aws.ec2(region), instance_id)
    tags = {t["Key"]: t["Value"] for t in (instance or {}).get("Tags", [])}
    if tags.get(awsops.TAG_APPLIANCE) != name:
        raise UserError(
            f"{instance_id} in {region} is not an instance of {name} launched by Crust", hint="terminate it with the EC2 console or the aws CLI"
        )
    return {"id": instance_id, "region": region}
