# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ElementTree helpers for libvirt XML: parse safely, edit by path, compare structurally.

No Ansible imports: used by the plain client as well as the modules.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re
import xml.etree.ElementTree as ET

# Entity declarations allow entity-expansion attacks and libvirt never emits them.
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

# One step of an ensure() path: tag (optionally {namespace}tag) plus [@attr='value'] predicates.
_STEP = re.compile(r"^((?:\{[^}]*\})?[A-Za-z_][\w.-]*)((?:\[@[A-Za-z_][\w.:-]*=(?:'[^']*'|\"[^\"]*\")\])*)$")
_PREDICATE = re.compile(r"\[@([A-Za-z_][\w.:-]*)=(?:'([^']*)'|\"([^\"]*)\")\]")

# Elements that are a single device, both as children of <devices> and as the root
# of device XML handed to attachDevice/detachDevice.
_DEVICE_TAGS = frozenset((
    "audio", "channel", "console", "controller", "crypto", "disk", "filesystem", "graphics",
    "hostdev", "hub", "input", "interface", "iommu", "lease", "memballoon", "memory",
    "panic", "parallel", "redirdev", "redirfilter", "rng", "serial", "shmem", "smartcard",
    "sound", "tpm", "video", "vsock", "watchdog",
))

# Host-side interface names libvirt picks itself when the user did not name one.
_GENERATED_IFNAME = re.compile(r"^(vnet|tap|macvtap|macvlan)\d+$")


def parse(text):
    """Parse an XML document (str or UTF-8 bytes) into an Element.

    Raises ValueError (one line) on invalid XML or on DOCTYPE/ENTITY declarations.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("invalid XML: not UTF-8 (%s)" % e)
    if not isinstance(text, str):
        raise ValueError("invalid XML: expected a string, got %s" % type(text).__name__)
    if _DECLARATION.search(text):
        raise ValueError("refusing XML with a DOCTYPE or ENTITY declaration")
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError("invalid XML: %s" % " ".join(str(e).split()))


def tostring(elem, pretty=False):
    """Serialize to a unicode string; ``pretty`` indents a copy by two spaces."""
    if pretty:
        elem = copy.deepcopy(elem)
        ET.indent(elem, space="  ")
    return ET.tostring(elem, encoding="unicode")


def _node(root, path):
    if path in (None, "", "."):
        return root
    return root.find(path)


def find_text(root, path, default=None):
    """Stripped text of the first match of ``path``; ``default`` if absent or empty."""
    elem = _node(root, path)
    if elem is None or elem.text is None or not elem.text.strip():
        return default
    return elem.text.strip()


def find_attr(root, path, attr, default=None):
    """Attribute ``attr`` of the first match of ``path`` (None/'.' means root itself)."""
    elem = _node(root, path)
    if elem is None:
        return default
    return elem.get(attr, default)


def _split_path(path):
    # Split on '/' outside quotes, brackets and {namespace} braces.
    steps, current, quote, depth = [], [], None, 0
    for char in path:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "/" and depth == 0:
            steps.append("".join(current))
            current = []
            continue
        current.append(char)
    steps.append("".join(current))
    return steps


def ensure(root, path):
    """Return the element at ``path``, creating missing elements along the way.

    ``path`` is a '/'-separated list of tags, each optionally followed by
    ``[@attr='value']`` predicates; created elements carry those attributes.
    """
    elem = root
    for step in _split_path(path):
        if step == ".":
            continue
        match = _STEP.match(step)
        if not match:
            raise ValueError("unsupported path step %r in %r" % (step, path))
        child = elem.find(step)
        if child is None:
            attrs = {}
            for name, single, double in _PREDICATE.findall(match.group(2)):
                attrs[name] = single or double
            child = ET.SubElement(elem, match.group(1), attrs)
        elem = child
    return elem


def set_text(root, path, value):
    """Set the text at ``path`` (created if needed); None clears it."""
    elem = ensure(root, path) if path not in (None, "", ".") else root
    elem.text = None if value is None else str(value)
    return elem


def set_attr(root, path, attr, value):
    """Set ``attr`` at ``path`` (created if needed); None removes it without creating anything."""
    if value is None:
        elem = _node(root, path)
        if elem is not None:
            elem.attrib.pop(attr, None)
        return elem
    elem = ensure(root, path) if path not in (None, "", ".") else root
    elem.set(attr, str(value))
    return elem


def remove(root, path):
    """Remove every element matching ``path`` below ``root``; return how many were removed."""
    parents = dict((child, parent) for parent in root.iter() for child in parent)
    count = 0
    for elem in list(root.iterfind(path)):
        parent = parents.get(elem)
        if parent is not None:
            parent.remove(elem)
            count += 1
    return count


def strip_generated(elem, extra=()):
    """Deep copy of ``elem`` without the values libvirt generates.

    Handles a whole <domain> or a single device element. Removed: the domain
    ``id`` attribute, <uuid> and top-level <seclabel>; each device's own
    <address>, interface <mac> and auto-named <target dev='vnetN'>; every
    <alias> except user aliases (``ua-`` prefix); plus the paths in ``extra``.
    """
    result = copy.deepcopy(elem)
    if result.tag == "domain":
        result.attrib.pop("id", None)
        remove(result, "uuid")
        # Only the top-level label is generated; per-disk <seclabel> is user configuration.
        remove(result, "seclabel")
        devices = result.findall("devices/*")
    elif result.tag in _DEVICE_TAGS:
        devices = [result]
    else:
        devices = []
    for dev in devices:
        # Only the device's own guest address: <source><address> of a hostdev names host hardware.
        remove(dev, "address")
        if dev.tag == "interface":
            remove(dev, "mac")
            for target in dev.findall("target"):
                if target.get("managed") != "no" and _GENERATED_IFNAME.match(target.get("dev", "")):
                    dev.remove(target)
    for parent in list(result.iter()):
        for alias in parent.findall("alias"):
            if not alias.get("name", "").startswith("ua-"):
                parent.remove(alias)
    for path in extra:
        remove(result, path)
    return result


def canonical(elem):
    """Hashable form ignoring whitespace, attribute order and comments."""
    text = (elem.text or "").strip() or None
    children = tuple(canonical(child) for child in elem if isinstance(child.tag, str))
    return (elem.tag, tuple(sorted(elem.attrib.items())), text, children)


def _as_element(doc):
    return parse(doc) if isinstance(doc, (str, bytes)) else doc


def equal(a, b, ignore_generated=True):
    """Structural equality of two documents (Elements or XML strings)."""
    a, b = _as_element(a), _as_element(b)
    if ignore_generated:
        a, b = strip_generated(a), strip_generated(b)
    return canonical(a) == canonical(b)


def to_dict(elem):
    """``{tag: body}`` for diff output: '@attr' keys, '#text', repeated children as lists.

    A body with only text is that text; an empty element is None.
    """
    return {elem.tag: _body(elem)}


def _body(elem):
    body = {}
    repeated = set()
    for name, value in elem.attrib.items():
        body["@" + name] = value
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        value = _body(child)
        if child.tag in repeated:
            body[child.tag].append(value)
        elif child.tag in body:
            body[child.tag] = [body[child.tag], value]
            repeated.add(child.tag)
        else:
            body[child.tag] = value
    text = (elem.text or "").strip()
    if text:
        if not body:
            return text
        body["#text"] = text
    return body or None
