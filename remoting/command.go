package remoting

import (
	"fmt"
	"strconv"
)

// SerializeType says how a frame's header is encoded. It travels in the top byte of the header-length word.
type SerializeType byte

const (
	SerializeJSON     SerializeType = 0
	SerializeRocketMQ SerializeType = 1
)

func (t SerializeType) String() string {
	switch t {
	case SerializeJSON:
		return "JSON"
	case SerializeRocketMQ:
		return "ROCKETMQ"
	}
	return "SerializeType(" + strconv.Itoa(int(t)) + ")"
}

// LanguageCode is the sender's language (LanguageCode.java): a name in JSON headers, a byte in binary ones.
type LanguageCode byte

const (
	LanguageJava   LanguageCode = 0
	LanguageCPP    LanguageCode = 1
	LanguageDotNet LanguageCode = 2
	LanguagePython LanguageCode = 3
	LanguageDelphi LanguageCode = 4
	LanguageErlang LanguageCode = 5
	LanguageRuby   LanguageCode = 6
	LanguageOther  LanguageCode = 7
	LanguageHTTP   LanguageCode = 8
	LanguageGo     LanguageCode = 9
	LanguagePHP    LanguageCode = 10
	LanguageOMS    LanguageCode = 11
	LanguageRust   LanguageCode = 12
)

var languageNames = [...]string{"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"}

func (l LanguageCode) String() string {
	if int(l) < len(languageNames) {
		return languageNames[l]
	}
	return "OTHER"
}

// ParseLanguage maps a JSON language name to its code; unknown names become LanguageOther, as Java would not
// reject a peer for its language.
func ParseLanguage(name string) LanguageCode {
	for i, n := range languageNames {
		if n == name {
			return LanguageCode(i)
		}
	}
	return LanguageOther
}

// Command is one remoting frame: a request or a response.
type Command struct {
	Code      int32
	Language  LanguageCode
	Version   int32
	Opaque    int32
	Flag      int32
	Remark    string
	ExtFields map[string]string
	Body      []byte

	// HeaderType is the header encoding: the one it arrived in, or the one Encode uses.
	HeaderType SerializeType

	header []byte // the header, while DecodePartial left extFields unread (Complete)
}

// IsResponse reports whether the response bit of Flag is set.
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether the one-way bit of Flag is set.
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// Ext returns an extension field, or "" when absent.
func (c *Command) Ext(key string) string { return c.ExtFields[key] }

// NewRequest returns a request command with the given code and extension fields (nil is fine).
func NewRequest(code int32, ext map[string]string) *Command {
	return &Command{Code: code, Language: LanguageGo, ExtFields: ext}
}

// NewResponse returns a response to req carrying code and remark.
func NewResponse(req *Command, code int32, remark string) *Command {
	return &Command{Code: code, Language: LanguageJava, Opaque: req.Opaque, Flag: FlagResponse, Remark: remark}
}

func (c *Command) String() string {
	kind := "request"
	if c.IsResponse() {
		kind = "response"
	}
	return fmt.Sprintf("%s code=%d opaque=%d flag=%d remark=%q ext=%v body=%dB header=%s",
		kind, c.Code, c.Opaque, c.Flag, c.Remark, c.ExtFields, len(c.Body), c.HeaderType)
}
