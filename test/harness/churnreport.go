package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// ChurnRecord is one resolver's guard-on churn run against its guard-off
// run (test/k8s/live, TestRebalanceGuardKeepsSplitTracesWhole), as `make
// bench-churn` publishes it in docs/benchmarks.md (test/cmd/bench
// -churn-report). The file holds one JSON record per line.
type ChurnRecord struct {
	Resolver                        string
	Changes                         int
	SpansPerSecond                  float64
	CostSeconds, BoundSeconds       float64
	BackendSpansOn, BackendSpansOff int
	KeptShareOn, KeptShareOff       float64
	InFlight, CompleteOn            int
	CompleteOff, PartialOff         int
	// AgreementSeconds: the slowest time, over both runs' changes, from an
	// EndpointSlice change to every agent and guard holding the new ring.
	AgreementSeconds float64
}

// AppendChurnRecord adds rec to the record file at path.
func AppendChurnRecord(path string, rec ChurnRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadChurnRecords reads the record file at path; it is an error for it to
// hold none.
func ReadChurnRecords(path string) ([]ChurnRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []ChurnRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r ChurnRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no churn runs recorded (did the churn suite pass?)", path)
	}
	return recs, nil
}
