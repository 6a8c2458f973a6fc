package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// value is a field of Config that accepts text from a YAML scalar or an
// environment variable.
type value interface {
	set(text string) error
	String() string
}

// listElements is implemented by values that also accept a YAML sequence
// and one element per environment variable.
type listElements interface {
	value
	setList(items []string)
	setIndex(index int, text string) error
}

type stringValue string

func (v *stringValue) set(text string) error { *v = stringValue(text); return nil }
func (v *stringValue) String() string        { return string(*v) }

type boolValue bool

func (v *boolValue) set(text string) error {
	b, err := parseBool(text)
	if err != nil {
		return err
	}
	*v = boolValue(b)
	return nil
}

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }

// parseBool accepts the spellings of strconv.ParseBool and the YAML 1.1
// words yes, no, on and off, which registry:2's YAML parser also reads as
// booleans.
func parseBool(text string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(text))
	if err != nil {
		return false, fmt.Errorf("%q is not a boolean; use true or false", text)
	}
	return b, nil
}

type intValue int

func (v *intValue) set(text string) error {
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil {
		return fmt.Errorf("%q is not an integer", text)
	}
	*v = intValue(n)
	return nil
}

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

// sizeValue is a size in bytes, written as a plain integer.
type sizeValue int64

func (v *sizeValue) set(text string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a size in bytes; use an integer such as 5242880", text)
	}
	*v = sizeValue(n)
	return nil
}

func (v *sizeValue) String() string { return strconv.FormatInt(int64(*v), 10) }

// durationValue is written as time.ParseDuration reads it. A bare number
// is rejected: registry:2 would read it as nanoseconds, which is rarely what
// was meant.
type durationValue time.Duration

func (v *durationValue) set(text string) error {
	d, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a duration; use a number with a unit, such as 30s", text)
	}
	*v = durationValue(d)
	return nil
}

func (v *durationValue) String() string { return time.Duration(*v).String() }

type listValue []string

// set reads a YAML flow sequence such as "[a, b]", or else a
// comma-separated list. Empty elements are dropped.
func (v *listValue) set(text string) error {
	trimmed := strings.TrimSpace(text)
	if strings.HasPrefix(trimmed, "[") {
		var items []string
		if err := yaml.Unmarshal([]byte(trimmed), &items); err != nil {
			return fmt.Errorf("%q is not a list of strings: %w", text, err)
		}
		v.setList(items)
		return nil
	}
	v.setList(strings.Split(trimmed, ","))
	return nil
}

func (v *listValue) setList(items []string) {
	list := make([]string, 0, len(items))
	for _, item := range items {
		if item = strings.TrimSpace(item); item != "" {
			list = append(list, item)
		}
	}
	*v = list
}

// setIndex replaces element index, or appends when index is the length of
// the list, as registry:2 does for variables such as
// REGISTRY_HTTP_TLS_CLIENTCAS_0.
func (v *listValue) setIndex(index int, text string) error {
	switch {
	case index < len(*v):
		(*v)[index] = text
	case index == len(*v):
		*v = append(*v, text)
	default:
		return fmt.Errorf("index %d skips elements; the list has %d", index, len(*v))
	}
	return nil
}

func (v *listValue) String() string { return strings.Join(*v, ",") }
