package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// evalReport is what eval prints: as text lines (key=value, then the
// table of a --checkpoint run, then its path statistics) or, with --json,
// as one JSON object of the same fields. With --samples the metrics hold
// the samples' values; with --checkpoint they hold the floors, and the
// values are in Table, one row per step count.
type evalReport struct {
	N          int    `json:"n"`
	Dim        int    `json:"dim"`
	Data       string `json:"data"`
	Samples    string `json:"samples,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
	// Features names the feature network of FD and KID ("mnistnet").
	Features string `json:"features,omitempty"`
	// Reference is what FD and KID compare with ("mnist:test, 10000 images").
	Reference string          `json:"reference,omitempty"`
	Floors    int             `json:"floors"`
	W2        *scoreFloor     `json:"w2,omitempty"`
	MMD2      *mmdScore       `json:"mmd2,omitempty"`
	FD        *scoreFloor     `json:"fd,omitempty"`
	KID       *kidScore       `json:"kid,omitempty"`
	Table     []evalRow       `json:"table,omitempty"`
	Path      *flowPathReport `json:"path,omitempty"`
}

// scoreFloor is a distance with its noise floor (the mean over the floor
// pairs, and their standard deviation) and its ratio to the floor.
type scoreFloor struct {
	Value   *float64 `json:"value,omitempty"`
	Floor   float64  `json:"floor"`
	FloorSD spread   `json:"floor_sd"`
	Ratio   *float64 `json:"ratio,omitempty"`
}

// mmdScore is the unbiased MMD^2 with its floor and the kernel's
// bandwidth; no ratio, since the floor is 0 in expectation.
type mmdScore struct {
	Value     *float64 `json:"value,omitempty"`
	Floor     float64  `json:"floor"`
	FloorSD   spread   `json:"floor_sd"`
	Bandwidth float64  `json:"bandwidth"`
}

// kidScore is KID's mean over its subsets, their standard deviation, and
// the floor's mean and spread over the floor pairs.
type kidScore struct {
	Value      *float64 `json:"value,omitempty"`
	SD         *float64 `json:"sd,omitempty"`
	Floor      float64  `json:"floor"`
	FloorSD    spread   `json:"floor_sd"`
	Subsets    int      `json:"subsets"`
	SubsetSize int      `json:"subset_size"`
}

// evalRow is one step count of a --checkpoint run.
type evalRow struct {
	Solver string   `json:"solver"`
	Steps  int      `json:"steps"`
	NFE    int      `json:"nfe"`
	W2     *float64 `json:"w2,omitempty"`
	Ratio  float64  `json:"ratio"` // W2 or FD over its floor
	MMD2   *float64 `json:"mmd2,omitempty"`
	FD     *float64 `json:"fd,omitempty"`
	KID    *float64 `json:"kid,omitempty"`
	KIDSD  *float64 `json:"kid_sd,omitempty"`
}

// flowPathReport is generate.PathStats's result with how it was measured.
type flowPathReport struct {
	Straightness float64 `json:"straightness"`
	Kinetic      float64 `json:"kinetic"`
	Displacement float64 `json:"displacement"`
	Trajectories int     `json:"trajectories"`
	RK4Steps     int     `json:"rk4_steps"`
}

func (r *evalReport) setPointFloors(f pointFloors) {
	w, wsd := meanSD(f.w2)
	m, msd := meanSD(f.mmd2)
	r.W2 = &scoreFloor{Floor: w, FloorSD: wsd}
	r.MMD2 = &mmdScore{Floor: m, FloorSD: msd, Bandwidth: f.bandwidth}
}

func (r *evalReport) print(w io.Writer, asJSON bool) error {
	if asJSON {
		js, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", js)
		return err
	}
	var b strings.Builder
	head := fmt.Sprintf("n=%d dim=%d", r.N, r.Dim)
	switch {
	case r.W2 != nil && r.W2.Value != nil: // --samples, points: the line eval has always printed first
		fmt.Fprintf(&b, "%s w2=%.5f w2_floor=%.5f w2_floor_sd=%.5f floors=%d ratio=%.3f\n", head, *r.W2.Value, r.W2.Floor, r.W2.FloorSD, r.Floors, *r.W2.Ratio)
		fmt.Fprintf(&b, "mmd2=%.3e mmd2_floor=%.3e mmd2_floor_sd=%.3e bandwidth=%.4g\n", *r.MMD2.Value, r.MMD2.Floor, r.MMD2.FloorSD, r.MMD2.Bandwidth)
	case r.W2 != nil:
		fmt.Fprintf(&b, "%s w2_floor=%.5f w2_floor_sd=%.5f floors=%d mmd2_floor=%.3e mmd2_floor_sd=%.3e bandwidth=%.4g\n",
			head, r.W2.Floor, r.W2.FloorSD, r.Floors, r.MMD2.Floor, r.MMD2.FloorSD, r.MMD2.Bandwidth)
	case r.FD != nil && r.FD.Value != nil:
		fmt.Fprintf(&b, "%s features=%s fd=%.4f fd_floor=%.4f fd_floor_sd=%.4f floors=%d ratio=%.3f\n", head, r.Features, *r.FD.Value, r.FD.Floor, r.FD.FloorSD, r.Floors, *r.FD.Ratio)
		fmt.Fprintf(&b, "kid=%.3e kid_sd=%.3e kid_floor=%.3e kid_floor_sd=%.3e subsets=%d subset_size=%d reference=%q\n",
			*r.KID.Value, *r.KID.SD, r.KID.Floor, r.KID.FloorSD, r.KID.Subsets, r.KID.SubsetSize, r.Reference)
	case r.FD != nil:
		fmt.Fprintf(&b, "%s features=%s fd_floor=%.4f fd_floor_sd=%.4f floors=%d kid_floor=%.3e kid_floor_sd=%.3e subsets=%d subset_size=%d reference=%q\n",
			head, r.Features, r.FD.Floor, r.FD.FloorSD, r.Floors, r.KID.Floor, r.KID.FloorSD, r.KID.Subsets, r.KID.SubsetSize, r.Reference)
	}
	if len(r.Table) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		if r.W2 != nil {
			fmt.Fprint(tw, "solver\tsteps\tnfe\tw2\tratio\tmmd2\t\n")
			for _, row := range r.Table {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.5f\t%.3f\t%.3e\t\n", row.Solver, row.Steps, row.NFE, *row.W2, row.Ratio, *row.MMD2)
			}
		} else {
			fmt.Fprint(tw, "solver\tsteps\tnfe\tfd\tratio\tkid\tkid_sd\t\n")
			for _, row := range r.Table {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%.3f\t%.3e\t%.3e\t\n", row.Solver, row.Steps, row.NFE, *row.FD, row.Ratio, *row.KID, *row.KIDSD)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if p := r.Path; p != nil {
		fmt.Fprintf(&b, "straightness=%.5f kinetic=%.5f displacement=%.5f trajectories=%d rk4_steps=%d\n",
			p.Straightness, p.Kinetic, p.Displacement, p.Trajectories, p.RK4Steps)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
