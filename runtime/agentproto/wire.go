package agentproto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxMessageSize bounds one JSON line. A spec with many mounts and a long
// environment is tens of kilobytes; a megabyte-sized line means a bug.
const MaxMessageSize = 4 << 20

// ErrMessageTooLarge is returned for a line longer than MaxMessageSize.
var ErrMessageTooLarge = errors.New("agent protocol message exceeds 4 MiB")

// WriteMessage writes v as one JSON line. encoding/json never emits a raw
// newline, so the line break is an unambiguous frame end.
func WriteMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode agent message: %w", err)
	}
	if len(b) > MaxMessageSize {
		return ErrMessageTooLarge
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("send agent message: %w", err)
	}
	return nil
}

// ReadMessage reads one JSON line into v. It reads nothing past the line
// break, so raw bytes that follow (a stdio stream) stay in br.
func ReadMessage(br *bufio.Reader, v any) error {
	return readMessage(br, v, MaxMessageSize)
}

// readMessage is ReadMessage for lines of at most limit bytes.
func readMessage(br *bufio.Reader, v any, limit int) error {
	line, err := readLine(br, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("decode agent message: %w", err)
	}
	return nil
}

func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var buf bytes.Buffer
	for {
		chunk, err := br.ReadSlice('\n')
		if buf.Len()+len(chunk) > limit+1 {
			if limit == MaxMessageSize {
				return nil, ErrMessageTooLarge
			}
			return nil, fmt.Errorf("agent protocol message exceeds %d bytes", limit)
		}
		buf.Write(chunk)
		switch {
		case err == nil:
			return buf.Bytes(), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && buf.Len() > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
