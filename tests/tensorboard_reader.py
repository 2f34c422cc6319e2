#!/usr/bin/env python3
"""An independent reader of TensorBoard event files (standard library only), for the CPU test of
host/tensorboard_writer: checks every record's framing and masked CRC32C and decodes the Event
protocol buffers field by field. Prints one JSON object per event:
  {"wall_time": ..., "step": ..., "file_version": ..., "values": [{"tag": ..., "simple_value": ...}]}
(a non-finite simple_value as the string "nan", "inf" or "-inf")
Exits 1 naming the byte offset of the first malformed record."""
import json
import math
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fields(message):
    """(field number, wire type, value) of a serialized message."""
    position = 0

    def varint():
        nonlocal position
        value, shift = 0, 0
        while True:
            byte = message[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
    while position < len(message):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 1:
            yield number, wire, message[position:position + 8]
            position += 8
        elif wire == 2:
            length = varint()
            yield number, wire, message[position:position + length]
            position += length
        elif wire == 5:
            yield number, wire, message[position:position + 4]
            position += 4
        else:
            raise ValueError(f"wire type {wire}")
    if position != len(message):
        raise ValueError("a field runs past the end of its message")


def decode_event(data):
    event = {"values": []}
    for number, wire, value in fields(data):
        if (number, wire) == (1, 1):
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif (number, wire) == (2, 0):
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif (number, wire) == (3, 2):
            event["file_version"] = value.decode("utf-8")
        elif (number, wire) == (5, 2):
            for summary_number, summary_wire, summary_value in fields(value):
                if (summary_number, summary_wire) != (1, 2):
                    raise ValueError(f"Summary field {summary_number}")
                entry = {}
                for value_number, value_wire, item in fields(summary_value):
                    if (value_number, value_wire) == (1, 2):
                        entry["tag"] = item.decode("utf-8")
                    elif (value_number, value_wire) == (2, 5):
                        number_value = struct.unpack("<f", item)[0]
                        # JSON has no NaN or infinity: those are written as the strings "nan", "inf".
                        entry["simple_value"] = number_value if math.isfinite(number_value) else str(number_value)
                    else:
                        raise ValueError(f"Summary.Value field {value_number}")
                event["values"].append(entry)
        else:
            raise ValueError(f"Event field {number} (wire type {wire})")
    return event


def main(path):
    blob = open(path, "rb").read()
    position = 0
    while position < len(blob):
        start = position
        try:
            header = blob[position:position + 12]
            length, length_crc = struct.unpack("<QI", header)
            if masked(crc32c(header[:8])) != length_crc:
                raise ValueError("length CRC mismatch")
            data = blob[position + 12:position + 12 + length]
            (data_crc,) = struct.unpack("<I", blob[position + 12 + length:position + 16 + length])
            if len(data) != length or masked(crc32c(data)) != data_crc:
                raise ValueError("data CRC mismatch or truncated record")
            print(json.dumps(decode_event(data)))
        except (ValueError, struct.error, IndexError) as error:
            print(f"{path}: malformed record at byte {start}: {error}", file=sys.stderr)
            return 1
        position += 16 + length
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
