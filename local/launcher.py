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
            ORIGINAL_SEND(self, original_event, transform_input)
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
