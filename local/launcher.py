"""The local cloud: moto's server (pinned, moto[server]==5.2.5) with the few
patches that let amiscan's real ASL and real Lambdas run on it, IAM enforced
on every request (local/iam.py), plus a small control server through which
the harness plays Inspector and scripts faults.

Usage: python launcher.py --port P --control-port C [--functions-dir DIR] [--log-dir DIR]

Every patch names the moto gap it covers. Nothing else of moto is changed.
"""

import argparse
import copy
import functools
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The ASL engine calls back to moto on this port for every service.
PARSER = argparse.ArgumentParser()
PARSER.add_argument("--port", type=int, required=True)
PARSER.add_argument("--functions-dir", help="where the functions' bootstrap binaries are, one per function name "
                                             "(the workspace's debug build); none: invokes fail")
PARSER.add_argument("--log-dir", help="where the functions' processes write their logs (default: this process's stderr)")
PARSER.add_argument("--control-port", type=int, required=True)
ARGS = PARSER.parse_args()
os.environ["MOTO_PORT"] = str(ARGS.port)
# AWS managed policies exist in IAM (the scanner's role attaches
# AmazonSSMManagedInstanceCore), as they do in every account.
os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto  # noqa: E402
from moto.awslambda.models import LambdaFunction  # noqa: E402
from moto.core.config import default_user_config  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models.core import TaggedEC2Resource  # noqa: E402
from moto.ec2.models.instances import StateReason  # noqa: E402
from moto.ec2.responses.amis import AmisResponse  # noqa: E402
from moto.ec2.responses.instances import InstanceResponse  # noqa: E402
from moto.ec2.responses.tags import TagResponse  # noqa: E402
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix  # noqa: E402
from moto.events.models import Rule  # noqa: E402
from moto.events.utils import EventTemplateParser  # noqa: E402
from moto.inspector2 import urls as inspector2_urls  # noqa: E402
from moto.inspector2.models import Inspector2Backend  # noqa: E402
from moto.inspector2.responses import Inspector2Response  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402
from moto.s3.models import FakeBucket  # noqa: E402
from moto.sns.models import Subscription  # noqa: E402
from moto.sqs.models import Queue, sqs_backends  # noqa: E402
from moto.awslambda.models import LambdaBackend, lambda_backends  # noqa: E402
from moto.sts.models import sts_backends  # noqa: E402
import moto.moto_server.threaded_moto_server as threaded_moto_server  # noqa: E402
import moto.stepfunctions.parser.asl.utils.boto_client as asl_boto_client  # noqa: E402

from iam import Authorizer, Check, Denied, Gate, Principal  # noqa: E402
from runtime import FunctionHost  # noqa: E402

assert moto.__version__ == "5.2.5", f"the local cloud is written for moto 5.2.5, not {moto.__version__}"

# Real ASL execution (Task, Choice, Wait, Retry, Catch, intrinsics).
default_user_config["stepfunctions"] = {"execute_state_machine": True}

LOCK = threading.RLock()
STATE = {
    "findings": {},  # instance id -> [finding]
    "coverage": {},  # instance id -> covered resource
    "scripts": [],  # scripted Lambda answers: {function, match (text or all of a list), error, times}
    "no_capacity": set(),  # instance types RunInstances refuses
    "terminate_at_launch": {},  # image id -> the state reason its instances stop with
    "ondemand": {},  # on-demand scan id -> its record, as GetOnDemandScanStatus answers it
    "ondemand_tokens": {},  # (resource id, clientToken) -> scan id
    "ondemand_where": {},  # scan id -> the account and Region it runs in
    "ondemand_fail_starts": {},  # image id -> how many more StartOnDemandScan calls answer ThrottlingException
    "batches": [],  # what the event source poller did: {function, size, failed, error}
    "emails": [],  # what email subscriptions received: {to, subject, body, attributes}
}


# --- IAM: moto evaluates no policy. Every request is authorized first, by
# iam-simulate over the caller's policies in moto's IAM and the resource's own
# policy (local/iam.py); a denial answers as the service would.
AUTH = Authorizer()
ORIGINAL_APP = threaded_moto_server.DomainDispatcherApplication
threaded_moto_server.DomainDispatcherApplication = lambda create_app: Gate(ORIGINAL_APP(create_app), AUTH)
SESSIONS = {}  # (role ARN, session name) -> credentials


# moto checks a bucket policy's Deny statements itself, ignoring their
# conditions: the template's TLS-only Deny (aws:SecureTransport false) would
# refuse every object request. The gate has decided with the conditions.
def bucket_permission_neutral(self, action, resource):
    from moto.iam.access_control import PermissionResult

    return PermissionResult.NEUTRAL


FakeBucket.get_permission = bucket_permission_neutral


# moto's SetQueueAttributes clears a queue's policy when the request does not
# name Policy (its attribute setter assigns attributes.get("Policy")); SQS
# changes only the attributes a request names.
def set_attributes_keeping_policy(self, attributes, now=None):
    policy = getattr(self, "_policy_json", None)
    ORIGINAL_SET_QUEUE_ATTRIBUTES(self, attributes, now)
    if "Policy" not in attributes and policy is not None:
        self._policy_json = policy


ORIGINAL_SET_QUEUE_ATTRIBUTES = Queue._set_attributes
Queue._set_attributes = set_attributes_keeping_policy


def session_for(role_arn, session_name):
    """Credentials of a session of `role_arn`, as Lambda and Step Functions
    get them for a function's or a state machine's execution role."""
    key = (role_arn, session_name)
    with LOCK:
        if key in SESSIONS:
            return SESSIONS[key]
    account = role_arn.split(":")[4]
    session = sts_backends[account]["aws"].assume_role(
        region_name="us-east-1", role_session_name=session_name, role_arn=role_arn, policy=None, duration=43200,
        external_id=None)
    credentials = {"AccessKeyId": session.access_key_id, "SecretAccessKey": session.secret_access_key,
                   "SessionToken": session.session_token}
    AUTH.register(session.access_key_id, Principal(
        f"arn:aws:sts::{account}:assumed-role/{role_arn.split('/')[-1]}/{session_name}", account, role_arn=role_arn))
    with LOCK:
        SESSIONS[key] = credentials
    return credentials


def role_principal(role_arn, session_name):
    account = role_arn.split(":")[4]
    return Principal(f"arn:aws:sts::{account}:assumed-role/{role_arn.split('/')[-1]}/{session_name}", account,
                     role_arn=role_arn)


# --- Step Functions: moto's ASL engine calls every service as one fixed key.
# A task calls as the execution's role (or the state's Credentials.RoleArn),
# as Step Functions does.
def boto_client_for(region, service, state_credentials=None):
    import boto3
    from botocore.config import Config

    role_arn = getattr(state_credentials, "role_arn", None)
    credentials = session_for(role_arn, "states-execution") if role_arn else {
        "AccessKeyId": "unsigned-local", "SecretAccessKey": "x", "SessionToken": None}
    return boto3.client(
        service_name=service, region_name=region, endpoint_url=f"http://127.0.0.1:{ARGS.port}",
        aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        config=Config(parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1},
                      connect_timeout=99999, read_timeout=99999),
    )


ORIGINAL_BOTO_CLIENT_FOR = asl_boto_client.boto_client_for
for module in [m for m in list(sys.modules.values()) if m is not None]:
    if getattr(module, "boto_client_for", None) is ORIGINAL_BOTO_CLIENT_FOR:
        module.boto_client_for = boto_client_for


# --- Step Functions: moto's port of the ASL engine leaves the service
# integrations' name mapping out (its _normalise_parameters/_normalise_response
# do nothing), so `states:startExecution.sync:2` sends `StateMachineArn` and
# `Input` to botocore, which knows `stateMachineArn` and `input`, and reads
# `ExecutionArn` from an answer that says `executionArn`. Map the names as Step
# Functions does: parameters to the API's members, answers to the
# integration's PascalCase (user data, the child's Input and Output, untouched).
@functools.lru_cache(maxsize=None)
def _sfn_members(action):
    import botocore.session

    model = botocore.session.get_session().get_service_model("stepfunctions")
    name = "".join(part.capitalize() for part in action.split("_"))
    return {m.lower(): m for m in model.operation_model(name).input_shape.members}


def _pascal(value, keep=("Input", "Output")):
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            key = key[:1].upper() + key[1:]
            out[key] = inner if key in keep else _pascal(inner, ())
        return out
    if isinstance(value, list):
        return [_pascal(v, ()) for v in value]
    return value


def _sfn_normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
    ORIGINAL_SFN_NORMALISE(self, parameters, boto_service_name, service_action_name)
    members = _sfn_members(service_action_name or self._get_boto_service_action())
    for key in list(parameters):
        member = members.get(key.lower())
        if member and member != key:
            parameters[member] = parameters.pop(key)


def _sfn_normalise_response(self, response, boto_service_name=None, service_action_name=None):
    if isinstance(response, dict):
        normalised = _pascal(response)
        response.clear()
        response.update(normalised)


from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E402
    StateTaskServiceSfn,
)

ORIGINAL_SFN_NORMALISE = StateTaskServiceSfn._normalise_parameters
StateTaskServiceSfn._normalise_parameters = _sfn_normalise_parameters
StateTaskServiceSfn._normalise_response = _sfn_normalise_response


def _import_asl_services():
    """The ASL service modules import boto_client_for by name: load them now so
    the loop above reaches each of them."""
    import importlib
    import pkgutil

    import moto.stepfunctions.parser.asl as asl

    for info in pkgutil.walk_packages(asl.__path__, asl.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # a module moto itself never loads here
            continue
        if getattr(module, "boto_client_for", None) is ORIGINAL_BOTO_CLIENT_FOR:
            module.boto_client_for = boto_client_for


_import_asl_services()


# --- Lambda: moto runs functions only in Docker, which is not here. Run each
# function's bootstrap binary as Lambda runs a provided.al2023 function
# (local/runtime.py): its own environment variables from its configuration in
# moto, its execution role's session credentials, one process per concurrent
# invocation. A handler error is an Unhandled function error whose payload
# Step Functions matches by errorType.
HOSTS = {}


def host_for(function):
    with LOCK:
        host = HOSTS.get(function.function_name)
        if host is None:
            log = sys.stderr
            if ARGS.log_dir:
                log = open(os.path.join(ARGS.log_dir, f"function-{function.function_name}.log"), "ab")
            directory = ARGS.functions_dir or "/nonexistent"
            from pathlib import Path

            host = FunctionHost(function.function_name, Path(directory) / function.function_name, log,
                                function.region, f"http://127.0.0.1:{ARGS.port}", function.function_arn)
            HOSTS[function.function_name] = host
    return host


def forward_invoke(self, body, request_headers, response_headers):
    payload = body if isinstance(body, str) and body else "{}"
    with LOCK:
        for script in STATE["scripts"]:
            wanted = script["match"] if isinstance(script["match"], list) else [script["match"]]
            if script["function"] == self.function_name and all(w in payload for w in wanted) and script["times"] != 0:
                script["times"] -= 1
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(script["error"]).encode()
    host = host_for(self)
    host.configure(dict(self.environment_vars or {}), session_for(self.role, self.function_name),
                   int(self.memory_size or 128))
    ok, answer = host.invoke(payload.encode(), int(self.timeout or 3))
    if not ok:
        response_headers["x-amz-function-error"] = "Unhandled"
    return answer


LambdaFunction.invoke = forward_invoke


# --- EventBridge: moto 5.2.5 matches patterns but cannot deliver to a state
# machine (send_to_targets raises, and PutEvents answers 500, so clients retry
# and would start duplicates). Start the execution here, honouring Input,
# InputPath and InputTransformer, and never let a delivery failure fail PutEvents.
# moto keeps an event's `time` as epoch seconds; EventBridge hands targets
# ISO 8601 (`2026-11-23T10:00:00Z`), so convert it before any target sees it.
# Its delivery to a queue without Input* also drops the event's `account`:
# every queue target is rendered here from the whole event.
ORIGINAL_SEND = Rule.send_to_targets


def target_input(target, event):
    """What EventBridge hands a target: its `Input`, `InputPath` or
    `InputTransformer` over the event as delivered (ISO `time`, without moto's
    own `ingestion-time`), else the event. moto renders
    `<aws.events.event.json>` from its internal event and fills an empty
    `InputPathsMap` with defaults; EventBridge does neither."""
    moto_event, event = event, {k: v for k, v in event.items() if k != "ingestion-time"}
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        matches = parse(target["InputPath"]).find(event)
        return matches[0].value if matches else None
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        template = transformer.get("InputTemplate", "").replace("<aws.events.event.json>", json.dumps(event))
        return EventTemplateParser.parse(input_template=template,
                                         input_paths_map=transformer.get("InputPathsMap") or {"-": "$.no-such-path"},
                                         event=moto_event)
    return event


def send_to_targets(self, original_event, transform_input=True):
    if not self.event_pattern.matches_event(original_event):
        return
    # moto's own delivery (SQS, and the rest) converts the epoch itself.
    moto_event = original_event
    if isinstance(original_event.get("time"), (int, float, str)):
        try:
            epoch = float(original_event["time"])
        except ValueError:
            pass  # already a date
        else:
            original_event = {**original_event, "time": datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    others = []
    for target in self.targets:
        if not delivery_allowed(self, target):
            continue
        if target["Arn"].startswith("arn:aws:sqs:"):
            # Rendered here; moto's queue delivery sends it. moto's own
            # rendering of a target without Input* drops the event's
            # `account` (its default template has no such field); EventBridge
            # delivers the event whole.
            if any(k in target for k in ("Input", "InputPath", "InputTransformer")):
                body = target_input(target, original_event)
            else:  # the whole event; moto's delivery turns its epoch `time` into ISO 8601
                body = {k: v for k, v in moto_event.items() if k != "ingestion-time"}
            self._send_to_sqs_queue(target["Arn"].split(":")[5], body,
                                    target.get("SqsParameters", {}).get("MessageGroupId"))
            continue
        if target["Arn"].startswith("arn:aws:events:") and ":event-bus/" in target["Arn"]:
            forward_to_bus(target["Arn"], moto_event)
            continue
        if not target["Arn"].startswith("arn:aws:states:"):
            others.append(target)
            continue
        try:
            event_input = target_input(target, original_event)
            from moto.stepfunctions.responses import get_backend

            arn = target["Arn"]
            account, region = arn.split(":")[4], arn.split(":")[3]
            # EventBridge names executions at random; moto's parser backend
            # treats a missing name as one more "None" and refuses the second.
            get_backend(account, region).start_execution(
                arn, name=str(uuid.uuid4()), execution_input=json.dumps(event_input)
            )
        except Exception as err:  # a lost delivery, as EventBridge would have it
            print(f"local cloud: delivery to {target['Arn']} failed: {err!r}", file=sys.stderr, flush=True)
    if others:
        saved = self.targets
        self.targets = others
        try:
            ORIGINAL_SEND(self, dict(moto_event), transform_input)
        finally:
            self.targets = saved


def forward_to_bus(bus_arn, event):
    """An event bus target in another account or Region (member.yaml's rules
    forward to the hub's bus): EventBridge delivers the event as it is, its
    `id`, `account`, `region`, `resources` and `time` kept (moto's own
    forwarding puts a new event from the receiving account, without
    `resources`), to every rule of that bus."""
    from moto.events.models import events_backends

    region, account, name = bus_arn.split(":")[3], bus_arn.split(":")[4], bus_arn.split("/", 1)[1]
    try:
        bus = events_backends[account][region].describe_event_bus(name)
    except Exception as err:  # a lost delivery, as EventBridge would have it
        print(f"local cloud: no event bus {bus_arn}: {err!r}", file=sys.stderr, flush=True)
        return
    for rule in list(bus.rules.values()):
        rule.send_to_targets(copy.deepcopy(event))


Rule.send_to_targets = send_to_targets
EVENTS = Principal(None, None, service="events.amazonaws.com")


def delivery_allowed(rule, target):
    """What EventBridge must be allowed to deliver: to a queue, the queue's
    policy (and its key's) must admit events.amazonaws.com for this rule; with
    a RoleArn, the role must trust EventBridge and may act on the target.
    A refused delivery is lost, as on AWS (FailedInvocations), and logged."""
    region, account = rule.arn.split(":")[3], rule.arn.split(":")[4]
    service = {"aws:SourceArn": rule.arn, "aws:SourceAccount": account}
    try:
        if target.get("RoleArn"):
            role = AUTH_STATE_ROLE(target["RoleArn"])
            AUTH.check(EVENTS, [Check("sts:AssumeRole", target["RoleArn"], service,
                                      resource_policy=role, resource_account=target["RoleArn"].split(":")[4])],
                       region, account, "AssumeRole", "sts")
            service_of = target["Arn"].split(":")[2]
            action = {"states": "states:StartExecution", "sqs": "sqs:SendMessage",
                      "events": "events:PutEvents"}.get(service_of)
            # Another account's bus decides by its own policy too.
            policy = bus_policy(target["Arn"]) if service_of == "events" else None
            AUTH.check(role_principal(target["RoleArn"], "events-delivery"),
                       [Check(action, target["Arn"], resource_policy=policy,
                              resource_account=target["Arn"].split(":")[4])],
                       region, account, "PutTargets-delivery", service_of)
        elif target["Arn"].split(":")[2] == "sqs":
            queue = sqs_backends[target["Arn"].split(":")[4]][target["Arn"].split(":")[3]].queues.get(
                target["Arn"].split(":")[5])
            policy = json.loads(queue.policy) if queue is not None and queue.policy else None
            checks = [Check("sqs:SendMessage", target["Arn"], service, resource_policy=policy,
                            resource_account=target["Arn"].split(":")[4])]
            key = getattr(queue, "kms_master_key_id", None)
            if key:
                from iam import State, loads

                found = State(account, region).key(key)
                if found is not None:
                    checks += [Check(a, found.arn, {**service, "kms:EncryptionContext:aws:sqs:arn": target["Arn"]},
                                     resource_policy=loads(found.policy), resource_account=found.account_id)
                               for a in ("kms:GenerateDataKey", "kms:Decrypt")]
            AUTH.check(EVENTS, checks, region, account, "SendMessage", "sqs")
        return True
    except Denied as denied:
        print(f"local cloud: EventBridge could not deliver to {target['Arn']} for {rule.arn}: {denied.message}",
              file=sys.stderr, flush=True)
        return False


def bus_policy(bus_arn):
    """An event bus's resource policy (PutPermission, AWS::Events::EventBusPolicy), or None."""
    from iam import State

    region, account, name = bus_arn.split(":")[3], bus_arn.split(":")[4], bus_arn.split("/", 1)[1]
    return State(account, region).bus_policy(name)


def AUTH_STATE_ROLE(role_arn):
    from iam import State, loads

    role = State(role_arn.split(":")[4], "us-east-1").role(role_arn)
    return loads(role.assume_role_policy_document) if role is not None else None


# --- Inspector2: moto has no ListCoverage, and its ListFindings hands out one
# queue of canned answers in call order, which concurrent scans would mix up.
# The harness plays Inspector through the control server; both calls answer
# from what it recorded for the instance in the request's resourceId filter.
def instance_in(filter_criteria):
    for flt in (filter_criteria or {}).get("resourceId", []):
        return flt.get("value")
    return None


def list_findings(self, filter_criteria, max_results, next_token, sort_criteria):
    with LOCK:
        return list(STATE["findings"].get(instance_in(filter_criteria), []))


# moto answers ListFindings in one page whatever maxResults says; Inspector
# pages at maxResults (at most 100) with a nextToken, which the export streams.
def list_findings_response(self):
    findings = self.inspector2_backend.list_findings(
        filter_criteria=self._get_param("filterCriteria"), max_results=None, next_token=None, sort_criteria=None)
    size = min(int(self._get_param("maxResults") or 100), 100)
    start = int(self._get_param("nextToken") or 0)
    page = {"findings": findings[start:start + size]}
    if start + size < len(findings):
        page["nextToken"] = str(start + size)
    return json.dumps(page)


def list_coverage(self):
    instance = instance_in(self._get_param("filterCriteria"))
    with LOCK:
        covered = STATE["coverage"].get(instance)
    return json.dumps({"coveredResources": [covered] if covered else []})


Inspector2Backend.list_findings = list_findings
Inspector2Response.list_findings = list_findings_response
Inspector2Response.list_coverage = list_coverage
inspector2_urls.url_paths["{0}/coverage/list$"] = Inspector2Response.dispatch


# --- EC2: moto reads one resource's tags by scanning every tag in the
# Region (describe_tags with a resource-id filter), so a tag filter over n
# AMIs costs n^2: 3.5 minutes for DescribeImages over 10,000 tagged AMIs.
# Read the resource's own tags directly; same result, linear.
def get_tags(self):
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind}
            for k, v in self.ec2_backend.tags.get(resource_id, {}).items()]


TaggedEC2Resource.get_tags = get_tags


# --- EC2: moto has no EnableImageDeprecation. Record the time on the image,
# which DescribeImages then reports as DeprecationTime.
def enable_image_deprecation(self):
    ami_id = self._get_param("ImageId")
    when = self._get_param("DeprecateAt")
    self.ec2_backend.describe_images(ami_ids=[ami_id])[0].deprecation_time = when
    return ActionResult({"Return": True})


AmisResponse.enable_image_deprecation = enable_image_deprecation


# --- EC2: moto lets CreateTags tag an AMI that was deregistered (it keeps
# the id to answer DescribeImages); EC2 refuses with InvalidAMIID.NotFound,
# which is how tag-ami learns that the AMI is gone.
ORIGINAL_CREATE_TAGS = TagResponse.create_tags


def create_tags(self):
    for resource_id in self._get_param("Resources", []):
        if resource_id in self.ec2_backend.deleted_amis:
            raise InvalidAMIIdError(resource_id)
    return ORIGINAL_CREATE_TAGS(self)


TagResponse.create_tags = create_tags


# --- EC2: capacity cannot run out in moto, and every instance it launches
# runs. Let a test refuse instance types, and make an image's instances
# terminate at launch.
ORIGINAL_RUN = InstanceResponse.run_instances


class InsufficientCapacity(EC2ClientError):
    def __init__(self, instance_type):
        super().__init__("InsufficientInstanceCapacity", f"We currently do not have sufficient {instance_type} capacity.")


def run_instances(self):
    instance_type = self._get_param("InstanceType")
    with LOCK:
        refused = instance_type in STATE["no_capacity"]
        stops = STATE["terminate_at_launch"].get(self._get_param("ImageId"))
    if refused:
        raise InsufficientCapacity(instance_type)
    result = ORIGINAL_RUN(self)
    if stops:
        # What EC2 does with an image whose snapshots it cannot decrypt: the
        # launch succeeds, and the instance terminates at once with a reason.
        for instance in self.ec2_backend.all_instances():
            if instance.image_id == self._get_param("ImageId") and instance.state == "running":
                instance.terminate()
                instance.state_reason = StateReason(stops["message"], stops["code"])
    return result


InstanceResponse.run_instances = run_instances


# --- Inspector2: moto has no on-demand machine image scan. StartOnDemandScan,
# GetOnDemandScanStatus and ListOnDemandScans answer from STATE["ondemand"],
# as the Inspector API Reference gives them: one running scan per AMI (a second start is a
# ConflictException), a repeated clientToken answers the scan it started,
# StartOnDemandScan answers HTTP 202, times are ISO 8601 strings. The scans
# themselves are played by the harness (it lists them through the control
# server, ends them there and sends their events through EventBridge); the
# 30 days a record is kept are not emulated.
class InspectorError(JsonRESTError):
    def __init__(self, code, error_type, message, **fields):
        super().__init__(error_type, message)
        self.code = code
        self.description = json.dumps({"message": message, **fields})


def iso_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ondemand_params(response, *names):
    values = {}
    for name in names:
        value = response._get_param(name)
        if value in (None, "") and name in ("resourceId", "resourceType", "scanId"):
            raise InspectorError(400, "ValidationException", f"{name} is required", reason="FIELD_VALIDATION_FAILED")
        values[name] = value
    if values.get("resourceType") not in (None, "AMI"):
        raise InspectorError(400, "ValidationException", "resourceType must be AMI", reason="FIELD_VALIDATION_FAILED")
    return values


def start_on_demand_scan(self):
    p = ondemand_params(self, "resourceId", "resourceType", "clientToken")
    ami_id = p["resourceId"]
    backend = ec2_backends[self.current_account][self.region]
    if ami_id not in backend.amis:
        raise InspectorError(400, "ValidationException", f"The AMI {ami_id} does not exist", reason="OTHER")
    # Inspector scans an AMI only in the account that owns it and its
    # snapshots (no IAM action or condition key can say so: the on-demand
    # scan's actions have no resource type). The error's exact code is not
    # documented: the one for an AMI it cannot find.
    if backend.amis[ami_id].owner_id != self.current_account:
        raise InspectorError(400, "ValidationException",
                             f"The AMI {ami_id} is not owned by account {self.current_account}", reason="OTHER")
    with LOCK:
        left = STATE["ondemand_fail_starts"].get(ami_id, 0)
        if left:
            STATE["ondemand_fail_starts"][ami_id] = left - 1
            raise InspectorError(429, "ThrottlingException", "Rate exceeded")
        token = (ami_id, p["clientToken"]) if p["clientToken"] else None
        if token in STATE["ondemand_tokens"]:
            return 202, {}, json.dumps({"scanId": STATE["ondemand_tokens"][token]})
        if any(s["resourceId"] == ami_id and s["scanStatus"] == "IN_PROGRESS" for s in STATE["ondemand"].values()):
            raise InspectorError(409, "ConflictException", f"An on-demand scan of {ami_id} is already in progress",
                                 resourceId=ami_id, resourceType="AMI")
        scan_id = str(uuid.uuid4())
        STATE["ondemand"][scan_id] = {"scanId": scan_id, "resourceId": ami_id, "resourceType": "AMI",
                                      "scanStatus": "IN_PROGRESS", "startedAt": iso_now()}
        # Where the scan runs, for the harness (not part of Inspector's answer).
        STATE["ondemand_where"][scan_id] = {"account": self.current_account, "region": self.region}
        if token:
            STATE["ondemand_tokens"][token] = scan_id
    return 202, {}, json.dumps({"scanId": scan_id})


def get_on_demand_scan_status(self):
    p = ondemand_params(self, "resourceId", "resourceType", "scanId")
    with LOCK:
        scan = STATE["ondemand"].get(p["scanId"])
    if not scan or scan["resourceId"] != p["resourceId"]:
        raise InspectorError(404, "ResourceNotFoundException", f"No on-demand scan {p['scanId']} of {p['resourceId']}")
    return json.dumps(scan)


def list_on_demand_scans(self):
    p = ondemand_params(self, "resourceId", "resourceType", "maxResults", "nextToken")
    with LOCK:
        items = [s for s in STATE["ondemand"].values() if s["resourceId"] == p["resourceId"]]
    items.sort(key=lambda s: s["startedAt"], reverse=True)  # newest first
    size, start = int(p["maxResults"] or 100), int(p["nextToken"] or 0)
    page = {"items": items[start:start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return json.dumps(page)


Inspector2Response.start_on_demand_scan = start_on_demand_scan
Inspector2Response.get_on_demand_scan_status = get_on_demand_scan_status
Inspector2Response.list_on_demand_scans = list_on_demand_scans
for path in ("ondemand/scan", "ondemand/scan/status", "ondemand/scans"):
    inspector2_urls.url_paths["{0}/" + path + "$"] = Inspector2Response.dispatch


# --- SQS event source mappings: moto invokes a mapped function inline from
# SendMessage, one message at a time and in Docker, and never redelivers.
# Lambda's poller is what the collector is written for, so that is what runs
# here: a thread per mapping (CreateEventSourceMapping, with the template's
# BatchSize, MaximumBatchingWindowInSeconds, FunctionResponseTypes and
# ScalingConfig.MaximumConcurrency) receives up to BatchSize messages, invokes
# when the batch is full or the window has passed since its first message,
# deletes what the function did not list in batchItemFailures (a function
# error or an unreadable answer fails the whole batch) and leaves the rest to
# reappear after the queue's visibility timeout; moto's ReceiveMessage moves a
# message to the dead-letter queue once it was received maxReceiveCount times.
def add_message(self, message):
    with self._messages_lock:
        self._messages.append(message)
        self._messages_lock.notify_all()


Queue.add_message = add_message
POLLERS = {}  # mapping uuid -> thread
INVOKE_LIMIT = 6 * 1024 * 1024  # Lambda's synchronous payload limit


def sqs_event(messages, queue, region):
    return {"Records": [{
        "messageId": m.id,
        "receiptHandle": m.receipt_handle,
        "body": m.body,
        "attributes": {
            "ApproximateReceiveCount": str(m.approximate_receive_count),
            "SentTimestamp": str(m.sent_timestamp),
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": str(m.approximate_first_receive_timestamp),
        },
        "messageAttributes": {},
        "md5OfBody": m.body_md5,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.queue_arn,
        "awsRegion": region,
    } for m in messages]}


def deliver(esm, queue, backend, messages):
    function = lambda_backends[esm.account_id][esm.region].get_function(esm.function_arn)
    event = sqs_event(messages, queue, esm.region)
    headers = {}
    answer = function.invoke(json.dumps(event), {}, headers)
    failed = {m.id for m in messages}  # unless the answer says otherwise
    error = None
    if headers.get("x-amz-function-error"):
        error = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
    elif "ReportBatchItemFailures" in (esm.function_response_types or []):
        try:
            listed = {f["itemIdentifier"] for f in (json.loads(answer or b"{}") or {}).get("batchItemFailures") or []}
            if listed - failed:
                raise ValueError(f"unknown itemIdentifier {sorted(listed - failed)}")
            failed = listed
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            error = f"unreadable partial batch response: {err}"
    else:
        failed = set()
    for m in messages:
        if m.id not in failed:
            try:
                backend.delete_message(queue.name, m.receipt_handle)
            except Exception as err:  # as Lambda: the message comes back and is delivered again
                print(f"local cloud: delete after {function.function_name} failed: {err!r}", file=sys.stderr, flush=True)
    with LOCK:
        STATE["batches"].append({"function": function.function_name, "size": len(messages),
                                 "failed": len(failed), "error": error})


def poller_checks(esm, queue, actions):
    """Lambda polls and deletes as the function's execution role: the role
    needs the queue actions (and kms:Decrypt on an encrypted queue)."""
    from iam import State, loads

    checks = [Check(a, queue.queue_arn, resource_policy=json.loads(queue.policy) if queue.policy else None,
                    resource_account=esm.account_id) for a in actions]
    key = State(esm.account_id, esm.region).key(getattr(queue, "kms_master_key_id", None))
    if key is not None and "sqs:ReceiveMessage" in actions:
        checks.append(Check("kms:Decrypt", key.arn, {"kms:EncryptionContext:aws:sqs:arn": queue.queue_arn,
                                                      "kms:ViaService": f"sqs.{esm.region}.amazonaws.com"},
                            resource_policy=loads(key.policy), resource_account=key.account_id))
    return checks


def poller_may(esm, queue, actions, cache={}):
    """One decision per mapping and action set every few seconds, as a refusal
    would stop Lambda's poller until the role is fixed."""
    function = lambda_backends[esm.account_id][esm.region].get_function(esm.function_arn)
    cached = cache.get((esm.uuid, actions))
    if cached and time.time() - cached[0] < 3:
        return cached[1]
    try:
        AUTH.check(role_principal(function.role, function.function_name), poller_checks(esm, queue, actions),
                   esm.region, esm.account_id, "ReceiveMessage", "sqs")
        allowed = True
    except Denied as denied:
        print(f"local cloud: the event source mapping of {function.function_name} may not poll "
              f"{queue.queue_arn}: {denied.message}", file=sys.stderr, flush=True)
        allowed = False
    cache[(esm.uuid, actions)] = (time.time(), allowed)
    return allowed


def poll(esm):
    backend = sqs_backends[esm.account_id][esm.region]
    queue = next(q for q in backend.queues.values() if q.queue_arn == esm.event_source_arn)
    window = float(esm.max_batch_window or 0)
    limit = int((esm.scaling_config or {}).get("MaximumConcurrency") or 1000)
    in_flight = threading.BoundedSemaphore(limit)
    batch, first = [], None
    while esm.enabled:
        if not poller_may(esm, queue, ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                       "sqs:ChangeMessageVisibility")):
            time.sleep(1)
            continue
        got = backend.receive_message(queue.name, esm.batch_size - len(batch), 0, int(queue.visibility_timeout))
        batch += [m for m in got if m.id not in {b.id for b in batch}]
        if batch and first is None:
            first = time.time()
        size = sum(len(m.body) for m in batch)
        if batch and (len(batch) >= esm.batch_size or size >= INVOKE_LIMIT or time.time() - first >= window):
            in_flight.acquire()

            def run(messages=batch):
                try:
                    deliver(esm, queue, backend, messages)
                except Exception as err:  # the batch stays in the queue, as after a function error
                    print(f"local cloud: batch to {esm.function_name} failed: {err!r}", file=sys.stderr, flush=True)
                finally:
                    in_flight.release()

            threading.Thread(target=run, daemon=True).start()
            batch, first = [], None
        elif not got:
            time.sleep(0.2)


ORIGINAL_CREATE_ESM = LambdaBackend.create_event_source_mapping


def create_event_source_mapping(self, spec):
    esm = ORIGINAL_CREATE_ESM(self, spec)
    if ":sqs:" in esm.event_source_arn:
        thread = threading.Thread(target=poll, args=(esm,), daemon=True)
        POLLERS[esm.uuid] = thread
        thread.start()
    return esm


LambdaBackend.create_event_source_mapping = create_event_source_mapping


# --- SNS email: moto sends no email. An email subscription records what it
# would have received instead: the subject, and moto's own choice of body
# (the `email` entry of a per-protocol message, else `default`), after the
# subscription's filter policy.
ORIGINAL_SUBSCRIPTION_PUBLISH = Subscription.publish


def subscription_publish(self, message, message_id, subject=None, message_attributes=None, group_id=None,
                         deduplication_id=None, message_structure=None):
    if self.protocol != "email":
        return ORIGINAL_SUBSCRIPTION_PUBLISH(self, message, message_id, subject=subject,
                                             message_attributes=message_attributes, group_id=group_id,
                                             deduplication_id=deduplication_id, message_structure=message_structure)
    if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(message_attributes, message):
        return None
    body = self._parse_message_structure(message, self.protocol) if message_structure == "json" else message
    attributes = {k: v.get("Value") for k, v in (message_attributes or {}).items()}
    with LOCK:
        STATE["emails"].append({"to": self.endpoint, "subject": subject, "body": body, "attributes": attributes})
    return None


Subscription.publish = subscription_publish


# --- The control server: how the harness plays Inspector and scripts faults.
class Control(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with LOCK:
            if self.path == "/findings":
                STATE["findings"][body["instance_id"]] = body["findings"]
            elif self.path == "/coverage":
                STATE["coverage"][body["instance_id"]] = body["coverage"]
            elif self.path == "/script":
                STATE["scripts"].append(body)
            elif self.path == "/no-capacity":
                STATE["no_capacity"] = set(body["instance_types"])
            elif self.path == "/terminate-at-launch":
                STATE["terminate_at_launch"][body["image_id"]] = {"code": body["code"], "message": body["message"]}
            elif self.path == "/reset":
                STATE["scripts"].clear()
                STATE["no_capacity"].clear()
            elif self.path == "/images":
                # Many AMIs at once for the bench, straight into the backend:
                # RegisterImage through the API costs seconds per hundred.
                backend = ec2_backends[body.get("account", "123456789012")][body.get("region", "us-east-1")]
                ids = [backend.register_image(name=f"{body['name_prefix']}-{n}").id for n in range(body["count"])]
                backend.create_tags(ids, body.get("tags", {}))
                return self._json({"image_ids": ids})
            elif self.path == "/ondemand/scans":
                return self._json({"scans": [{**s, **STATE["ondemand_where"].get(s["scanId"], {})}
                                             for s in STATE["ondemand"].values()]})
            elif self.path == "/ondemand/finish":
                scan = STATE["ondemand"][body["scan_id"]]
                scan.update({"scanStatus": body["status"], "completedAt": iso_now()})
                if body.get("reason"):
                    scan["scanStatusReason"] = body["reason"]
            elif self.path == "/ondemand/throttle-starts":
                STATE["ondemand_fail_starts"][body["image_id"]] = body["times"]
            elif self.path == "/batches":
                return self._json({"batches": list(STATE["batches"])})
            elif self.path == "/emails":
                return self._json({"emails": list(STATE["emails"])})
            elif self.path == "/denials":
                return self._json({"denials": list(AUTH.denials)})
            elif self.path == "/authorization":
                return self._json(AUTH.stats())
            elif self.path == "/session":
                # A session of a role for the harness to act as (a schedule's
                # role, a test's principal); with `service`, only if the role's
                # trust policy admits that service principal.
                if body.get("service"):
                    account = body["role_arn"].split(":")[4]
                    source = {k: v for k, v in {"aws:SourceAccount": account, "aws:SourceArn": body.get("source_arn")}.items() if v}
                    try:
                        AUTH.check(Principal(None, None, service=body["service"]),
                                   [Check("sts:AssumeRole", body["role_arn"], source,
                                          resource_policy=AUTH_STATE_ROLE(body["role_arn"]), resource_account=account)],
                                   "us-east-1", account, "AssumeRole", "sts")
                    except Denied as denied:
                        return self._json({"error": denied.message}, 403)
                return self._json(session_for(body["role_arn"], body.get("session_name", "harness")))
            elif self.path == "/account-admin":
                # The harness acting as an administrator of another account
                # (a member's): a session moto maps to that account, which
                # the IAM gate treats as the account's root.
                account = body["account"]
                credentials = session_for(f"arn:aws:iam::{account}:role/harness-administrator", "harness")
                AUTH.register(credentials["AccessKeyId"], Principal(f"arn:aws:iam::{account}:root", account, admin=True))
                return self._json(credentials)
            elif self.path == "/deregister":
                backend = ec2_backends[body.get("account", "123456789012")][body.get("region", "us-east-1")]
                for image_id in body["image_ids"]:
                    backend.amis.pop(image_id, None)
            else:
                self.send_response(404)
                self.end_headers()
                return
        self.send_response(204)
        self.end_headers()

    def _json(self, value, status=200):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=ARGS.port, verbose=False)
    server.start()
    control = ThreadingHTTPServer(("127.0.0.1", ARGS.control_port), Control)
    print(f"local cloud ready: moto on 127.0.0.1:{ARGS.port}, control on 127.0.0.1:{ARGS.control_port}", flush=True)
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for host in list(HOSTS.values()):
            host.stop()
        AUTH.close()
        server.stop()


if __name__ == "__main__":
    main()
