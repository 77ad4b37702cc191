package routing

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidTopic(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" when valid, else a substring of the error
	}{
		{"TopicTest", ""},
		{"a", ""},
		{"0", ""},
		{"%RETRY%orders-cg", ""},
		{"%DLQ%orders-cg", ""},
		{"ns%orders|v2_x-y", ""},
		{strings.Repeat("a", TopicMaxLength), ""},
		{RetryTopicPrefix + strings.Repeat("g", RetryTopicMaxLength-len(RetryTopicPrefix)), ""},
		{DLQTopicPrefix + strings.Repeat("g", RetryTopicMaxLength-len(DLQTopicPrefix)), ""},

		{"", "the topic name is empty"},
		{" ", `topic " " has ' ' at byte 0`},
		{"orders eu", `has ' ' at byte 6`},
		{"orders.eu", `has '.' at byte 6`},
		{"orders/eu", `has '/' at byte 6`},
		{"%RETRY%cg+orders", `has '+' at byte 9`}, // RocketMQ 5's pop retry topics (V2) use '+': not a valid name
		{"a:b", `has ':' at byte 1`},
		{"订单", `has '订' at byte 0`},
		{"topic\n", `has '\n' at byte 5`},
		{"a\x00", `has '\x00' at byte 1`},
		{"a\xff", "has byte 0xff at byte 1"},
		{strings.Repeat("a", TopicMaxLength+1), "is 128 characters long; RocketMQ allows at most 127"},
		{RetryTopicPrefix + strings.Repeat("g", RetryTopicMaxLength-len(RetryTopicPrefix)+1), "is 256 characters long; RocketMQ allows at most 255"},
		{"RETRY%" + strings.Repeat("g", 200), "allows at most 127"}, // not the prefix: the plain limit
	} {
		err := ValidTopic(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidTopic(%.40q) = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidTopic(%.40q) = %v, want an error containing %q", tc.name, err, tc.want)
		case err != nil && !errors.Is(err, ErrInvalidName):
			t.Errorf("ValidTopic(%.40q) = %v, does not wrap ErrInvalidName", tc.name, err)
		}
	}
}

func TestValidGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string
	}{
		{"orders-cg", ""},
		{"CID_orders|eu%1", ""},
		{strings.Repeat("g", GroupMaxLength), ""},
		{"", "the consumer group name is empty"},
		{"orders cg", `consumer group "orders cg" has ' ' at byte 6`},
		{"orders.cg", `has '.' at byte 6`},
		{strings.Repeat("g", GroupMaxLength+1), "is 256 characters long; RocketMQ allows at most 255"},
	} {
		err := ValidGroup(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidGroup(%.40q) = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidGroup(%.40q) = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestInvalidNameMessagesAreBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20) + " "
	err := ValidTopic(huge)
	if err == nil || len(err.Error()) > 400 || !strings.Contains(err.Error(), "(1048577 bytes)") {
		t.Fatalf("error for a 1 MiB name: %d bytes: %.300v", len(err.Error()), err)
	}
}

// nameRE is RocketMQ's own statement of the rule, used as the independent reference of FuzzValidName.
var nameRE = regexp.MustCompile(NamePattern)

// FuzzValidName: ValidTopic and ValidGroup agree with RocketMQ's pattern and length limits on any input, and
// their errors are short, valid UTF-8 and wrap ErrInvalidName.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"TopicTest", "", "a b", "%RETRY%cg", "%DLQ%x", "订单", "\xff", strings.Repeat("a", 128),
		"%RETRY%" + strings.Repeat("a", 248), "%RETRY%" + strings.Repeat("a", 249), "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		topicLimit := TopicMaxLength
		if strings.HasPrefix(name, "%RETRY%") || strings.HasPrefix(name, "%DLQ%") {
			topicLimit = RetryTopicMaxLength
		}
		matches := nameRE.MatchString(name)
		for _, c := range []struct {
			kind  string
			err   error
			limit int
		}{{"topic", ValidTopic(name), topicLimit}, {"group", ValidGroup(name), GroupMaxLength}} {
			if want := matches && len(name) <= c.limit; (c.err == nil) != want {
				t.Fatalf("%s %q: err %v, want valid=%v", c.kind, name, c.err, want)
			}
			if c.err == nil {
				continue
			}
			msg := c.err.Error()
			if !errors.Is(c.err, ErrInvalidName) || len(msg) > 400 || !utf8.ValidString(msg) {
				t.Fatalf("%s %q: error %q (%d bytes)", c.kind, name, msg, len(msg))
			}
		}
	})
}
