"""The local cloud: moto's server (pinned, moto[server]==5.2.5) with the few
patches that let amiscan's real ASL and real Lambdas run on it, plus a small
control server through which the harness plays Inspector and scripts faults.

Usage: python launcher.py --port P --control-port C [--lambda-endpoint URL]

Every patch names the moto gap it covers. Nothing else of moto is changed.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The ASL engine calls back to moto on this port for every service.
PARSER = argparse.ArgumentParser()
PARSER.add_argument("--port", type=int, required=True)
PARSER.add_argument("--lambda-endpoint", help="where `cargo lambda watch` serves the functions (none: invokes fail)")
PARSER.add_argument("--control-port", type=int, required=True)
ARGS = PARSER.parse_args()
os.environ["MOTO_PORT"] = str(ARGS.port)

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
from moto.sns.models import Subscription  # noqa: E402
from moto.sqs.models import Queue, sqs_backends  # noqa: E402
from moto.awslambda.models import LambdaBackend, lambda_backends  # noqa: E402

assert moto.__version__ == "5.2.5", f"the local cloud is written for moto 5.2.5, not {moto.__version__}"

# Real ASL execution (Task, Choice, Wait, Retry, Catch, intrinsics).
default_user_config["stepfunctions"] = {"execute_state_machine": True}

LOCK = threading.Lock()
STATE = {
    "findings": {},  # instance id -> [finding]
    "coverage": {},  # instance id -> covered resource
    "scripts": [],  # scripted Lambda answers: {function, match (text or all of a list), error, times}
    "no_capacity": set(),  # instance types RunInstances refuses
    "terminate_at_launch": {},  # image id -> the state reason its instances stop with
    "ondemand": {},  # on-demand scan id -> its record, as GetOnDemandScanStatus answers it
    "ondemand_tokens": {},  # (resource id, clientToken) -> scan id
    "ondemand_fail_starts": {},  # image id -> how many more StartOnDemandScan calls answer ThrottlingException
    "batches": [],  # what the event source poller did: {function, size, failed, error}
    "emails": [],  # what email subscriptions received: {to, subject, body, attributes}
}


# --- Lambda: moto runs functions only in Docker, which is not here. Forward
# every invoke to `cargo lambda watch`, which runs the workspace's binaries.
# A handler error comes back as HTTP 500 {errorType, errorMessage}: report it
# as an Unhandled function error so Step Functions matches its errorType.
def forward_invoke(self, body, request_headers, response_headers):
    payload = body if isinstance(body, str) and body else "{}"
    with LOCK:
        for script in STATE["scripts"]:
            wanted = script["match"] if isinstance(script["match"], list) else [script["match"]]
            if script["function"] == self.function_name and all(w in payload for w in wanted) and script["times"] != 0:
                script["times"] -= 1
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(script["error"]).encode()
    if not ARGS.lambda_endpoint:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": "Lambda.ServiceException",
                           "errorMessage": "this local cloud runs no functions (no --lambda-endpoint)"}).encode()
    url = f"{ARGS.lambda_endpoint}/2015-03-31/functions/{self.function_name}/invocations"
    request = urllib.request.Request(url, data=payload.encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            error = json.loads(text)
        except ValueError:
            error = {"errorType": "Lambda.ServiceException", "errorMessage": text.decode(errors="replace")}
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(error).encode()


LambdaFunction.invoke = forward_invoke


# --- EventBridge: moto 5.2.5 matches patterns but cannot deliver to a state
# machine (send_to_targets raises, and PutEvents answers 500, so clients retry
# and would start duplicates). Start the execution here, honouring Input,
# InputPath and InputTransformer, and never let a delivery failure fail PutEvents.
# moto keeps an event's `time` as epoch seconds; EventBridge hands targets
# ISO 8601 (`2026-11-23T10:00:00Z`), so convert it before any target sees it.
ORIGINAL_SEND = Rule.send_to_targets


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
        if not target["Arn"].startswith("arn:aws:states:"):
            others.append(target)
            continue
        try:
            if "Input" in target:
                event_input = json.loads(target["Input"])
            elif "InputPath" in target:
                from jsonpath_ng.ext import parse

                matches = parse(target["InputPath"]).find(original_event)
                event_input = matches[0].value if matches else None
            elif "InputTransformer" in target:
                transformer = target["InputTransformer"]
                event_input = EventTemplateParser.parse(
                    input_template=transformer.get("InputTemplate"),
                    input_paths_map=transformer.get("InputPathsMap", {}),
                    event=original_event,
                )
            else:
                event_input = original_event
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


Rule.send_to_targets = send_to_targets


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
# as FACTS.md gives them: one running scan per AMI (a second start is a
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


def poll(esm):
    backend = sqs_backends[esm.account_id][esm.region]
    queue = next(q for q in backend.queues.values() if q.queue_arn == esm.event_source_arn)
    window = float(esm.max_batch_window or 0)
    limit = int((esm.scaling_config or {}).get("MaximumConcurrency") or 1000)
    in_flight = threading.BoundedSemaphore(limit)
    batch, first = [], None
    while esm.enabled:
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
                return self._json({"scans": [dict(s) for s in STATE["ondemand"].values()]})
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

    def _json(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
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
        server.stop()


if __name__ == "__main__":
    main()
