"""A policy document evaluated statement by statement like IAM does (actions, resources
and StringEquals/StringLike conditions with wildcards): how the unit tests keep an
action table and its include/**/iam-*.json in step."""
import fnmatch


def as_list(value):
    return [value] if isinstance(value, str) else list(value)


def matches(pattern, value, case_sensitive=True):
    """IAM's wildcards: * any run of characters (slashes too), ? one character."""
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def conditions_hold(statement, context):
    for operator, conditions in statement.get("Condition", {}).items():
        assert operator in ("StringEquals", "StringLike"), operator
        for key, wanted in conditions.items():
            if key not in context:
                return False
            test = (lambda w: context[key] == w) if operator == "StringEquals" else \
                (lambda w: matches(w, context[key]))
            if not any(test(value) for value in as_list(wanted)):
                return False
    return True


def allowed(document, action, resource, context):
    verdict = False
    for statement in document["Statement"]:
        if not any(matches(pattern, action, case_sensitive=False)
                   for pattern in as_list(statement["Action"])):
            continue
        if not any(matches(pattern, resource) for pattern in as_list(statement["Resource"])):
            continue
        if not conditions_hold(statement, context):
            continue
        if statement["Effect"] == "Deny":
            return False
        verdict = True
    return verdict
