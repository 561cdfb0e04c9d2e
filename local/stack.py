"""template.yaml as CloudFormation would deploy it: SAM's transform (the
pinned aws-sam-translator, offline), the conditions decided for a set of
parameters, and every intrinsic function resolved against the physical names
and attributes of the resources it refers to.

The local cloud provisions what this gives (roles with their policies,
resource policies, the functions' environments, the state machines'
definitions), so what is authorized locally is what the template grants.
"""

import copy
import json
import re
from pathlib import Path

from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[1]
NO_VALUE = object()


def template(path=None):
    parsed, matches = decode_str(Path(path or ROOT / "template.yaml").read_text())
    assert not matches, matches
    return parsed


def parameter_values(parsed, parameters):
    values = {name: spec.get("Default") for name, spec in parsed.get("Parameters", {}).items()}
    values.update(parameters)
    return {k: ("" if v is None else v) for k, v in values.items()}


def evaluate(node, parameters, conditions, parsed):
    """A condition or rule expression (Fn::Equals, Not, And, Or, Condition,
    Ref, Split, Select, Join) with these parameters (the template's defaults for
    the rest) and the conditions decided so far."""
    if not isinstance(node, dict):
        return node
    (fn, arg), = node.items()
    if fn == "Ref":
        return parameters.get(arg, parsed["Parameters"].get(arg, {}).get("Default"))
    if fn == "Condition":
        return conditions[arg]
    if fn == "Fn::Split":
        return evaluate(arg[1], parameters, conditions, parsed).split(arg[0])
    if fn == "Fn::Select":
        return evaluate(arg[1], parameters, conditions, parsed)[int(arg[0])]
    if fn == "Fn::Join":
        # A CommaDelimitedList parameter is kept as its text here.
        items = evaluate(arg[1], parameters, conditions, parsed)
        return items if isinstance(items, str) else arg[0].join(items)
    if fn == "Fn::Contains":
        return evaluate(arg[1], parameters, conditions, parsed) in evaluate(arg[0], parameters, conditions, parsed)
    values = [evaluate(a, parameters, conditions, parsed) for a in arg]
    return {"Fn::Equals": lambda: values[0] == values[1], "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values), "Fn::Or": lambda: any(values)}[fn]()


def conditions_of(parsed, parameters):
    """Every condition of the template, decided for these parameters."""
    done = {}
    for name, expression in parsed.get("Conditions", {}).items():
        done[name] = evaluate(expression, parameters, done, parsed)
    return done


def decided(node, conditions):
    """A template fragment with every Fn::If decided and AWS::NoValue
    dropped; other intrinsics are kept as they are."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return decided(yes if conditions[name] else no, conditions)
        out = {k: decided(v, conditions) for k, v in node.items()}
        return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(node, list):
        return [v for v in (decided(v, conditions) for v in node) if v != {"Ref": "AWS::NoValue"}]
    return node


class Resolver:
    """Resolves intrinsic functions. `names` maps `Ref` targets (parameters,
    pseudo parameters, logical ids) and `Logical.Attribute` to values."""

    def __init__(self, names, conditions, mappings=None):
        self.names, self.conditions, self.mappings = names, conditions, mappings or {}

    def __call__(self, node):
        out = self._resolve(node)
        return None if out is NO_VALUE else out

    def _resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self._resolve(v) for v in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self._name(arg)
            if fn == "Fn::GetAtt":
                key = ".".join(arg) if isinstance(arg, list) else arg
                return self._name(key)
            if fn == "Fn::If":
                name, yes, no = arg
                return self._resolve(yes if self.conditions[name] else no)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join":
                items = self._resolve(arg[1])
                if isinstance(items, str):  # a CommaDelimitedList parameter, as its text
                    items = items.split(",") if items else []
                return self._resolve(arg[0]).join(str(v) for v in items)
            if fn == "Fn::Select":
                return self._resolve(arg[1])[int(self._resolve(arg[0]))]
            if fn == "Fn::Split":
                return self._resolve(arg[1]).split(self._resolve(arg[0]))
            if fn == "Fn::FindInMap":
                name, top, second = (self._resolve(a) for a in arg)
                return self.mappings[name][str(top)][str(second)]
            if fn == "Fn::ToJsonString":
                return json.dumps(self._resolve(arg), separators=(",", ":"))
            if fn == "Condition":
                return self.conditions[arg]
        out = {}
        for k, v in node.items():
            value = self._resolve(v)
            if value is not NO_VALUE:
                out[k] = value
        return out

    def _name(self, key):
        if key not in self.names:
            raise KeyError(f"the local stack has no value for {key}")
        return self.names[key]

    def _sub(self, arg):
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        local = {**self.names, **{k: self._resolve(v) for k, v in variables.items()}}

        def one(match):
            if match.group(0).startswith("${!"):
                return "${" + match.group(1)[1:] + "}"
            if match.group(1) not in local:
                raise KeyError(f"the local stack has no value for {match.group(1)}")
            return str(local[match.group(1)])

        return re.sub(r"\$\{(!?[A-Za-z0-9_:.]+)\}", one, text)


class _NoManagedPolicies:
    """SAM asks for the managed policy map only to attach managed policies to
    roles it generates; amiscan's roles are its own, so nothing should ask."""

    def load(self):
        return {}


def transformed(parsed, parameters, region="us-east-1", account="123456789012", stack_name="amiscan"):
    """The template after SAM's transform, as CloudFormation receives it:
    every AWS::Serverless resource expanded, generated roles included."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    fragment = copy.deepcopy(parsed)
    for res in fragment["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://amiscan-artifacts/amiscan.zip"
        if res["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    values = parameter_values(parsed, parameters)
    values.update({"AWS::Region": region, "AWS::AccountId": account, "AWS::StackName": stack_name,
                   "AWS::Partition": "aws"})
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(
        region_name=region, aws_access_key_id="offline", aws_secret_access_key="offline"))
    return translator.translate(fragment, parameter_values=values,
                                get_managed_policy_map=_NoManagedPolicies().load)


def logical_roles(cfn):
    """AWS::IAM::Role resources of a (transformed) template: logical id -> resource."""
    return {name: res for name, res in cfn["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
