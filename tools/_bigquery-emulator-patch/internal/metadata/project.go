// This file replaces internal/metadata/project.go of
// github.com/goccy/bigquery-emulator v0.6.6 (MIT License, Copyright (c) 2022
// Masaaki Goshima) when devstack builds the tool servers; see tools/README.md.
//
// Upstream, a Project carries every job of the project, and the emulator
// loads the project on every request: each request read and JSON-decoded
// all jobs ever run, and each new job rewrote the project's list of job IDs.
// A 15-minute benchmark run makes tens of thousands of jobs, and a ledger
// load went from 0.2 s to 3.8 s. Here a Project reads a job from the jobs
// table only when asked for it, by its primary key.

package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

type Project struct {
	ID         string
	datasets   []*Dataset
	datasetMap map[string]*Dataset
	mu         sync.RWMutex
	repo       *Repository
}

func (p *Project) DatasetIDs() []string {
	ids := make([]string, len(p.datasets))
	for i := 0; i < len(p.datasets); i++ {
		ids[i] = p.datasets[i].ID
	}
	return ids
}

// JobIDs is empty: the projects row no longer lists its jobs (the jobs
// table's projectID column does), so writing the row clears the list an
// older database file may hold.
func (p *Project) JobIDs() []string {
	return []string{}
}

// Job reads one job, or returns nil when there is none (or it cannot be
// read, which upstream could not tell apart either).
func (p *Project) Job(id string) *Job {
	job, err := p.repo.FindJob(context.Background(), p.ID, id)
	if err != nil {
		return nil
	}
	return job
}

// Jobs reads every job of the project: only jobs.list asks for them.
func (p *Project) Jobs() []*Job {
	jobs, err := p.repo.findAllJobs(context.Background(), p.ID)
	if err != nil {
		return nil
	}
	return jobs
}

func (p *Project) Dataset(id string) *Dataset {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.datasetMap[id]
}

func (p *Project) Datasets() []*Dataset {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.datasets
}

func (p *Project) Insert(ctx context.Context, tx *sql.Tx) error {
	return p.repo.AddProject(ctx, tx, p)
}

func (p *Project) Delete(ctx context.Context, tx *sql.Tx) error {
	return p.repo.DeleteProject(ctx, tx, p)
}

func (p *Project) AddDataset(ctx context.Context, tx *sql.Tx, dataset *Dataset) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, exists := p.datasetMap[dataset.ID]; exists {
		return fmt.Errorf("dataset %s is already created", dataset.ID)
	}
	if err := dataset.Insert(ctx, tx); err != nil {
		return err
	}
	p.datasets = append(p.datasets, dataset)
	p.datasetMap[dataset.ID] = dataset
	if err := p.repo.UpdateProject(ctx, tx, p); err != nil {
		return err
	}
	return nil
}

func (p *Project) DeleteDataset(ctx context.Context, tx *sql.Tx, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dataset, exists := p.datasetMap[id]
	if !exists {
		return fmt.Errorf("dataset '%s' is not found in project '%s'", id, p.ID)
	}
	if err := dataset.Delete(ctx, tx); err != nil {
		return err
	}
	newDatasets := make([]*Dataset, 0, len(p.datasets))
	for _, dataset := range p.datasets {
		if dataset.ID == id {
			continue
		}
		newDatasets = append(newDatasets, dataset)
	}
	p.datasets = newDatasets
	delete(p.datasetMap, id)
	if err := p.repo.UpdateProject(ctx, tx, p); err != nil {
		return err
	}
	return nil
}

// AddJob inserts a job whose ID the project has not used; the check runs
// in the caller's transaction, and the jobs table's primary key backs it.
func (p *Project) AddJob(ctx context.Context, tx *sql.Tx, job *Job) error {
	found, err := p.repo.findJobs(ctx, tx, p.ID, []string{job.ID})
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("job %s is already created", job.ID)
	}
	if err := job.Insert(ctx, tx); err != nil {
		return err
	}
	// Clears the job list an older database's projects row holds, which
	// upstream's findProjects would otherwise read on every request.
	return p.repo.UpdateProject(ctx, tx, p)
}

func (p *Project) DeleteJob(ctx context.Context, tx *sql.Tx, id string) error {
	found, err := p.repo.findJobs(ctx, tx, p.ID, []string{id})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("job '%s' is not found in project '%s'", id, p.ID)
	}
	return found[0].Delete(ctx, tx)
}

// NewProject ignores jobs: they stay in the jobs table (see Job).
func NewProject(repo *Repository, id string, datasets []*Dataset, jobs []*Job) *Project {
	datasetMap := map[string]*Dataset{}
	for _, dataset := range datasets {
		datasetMap[dataset.ID] = dataset
	}
	return &Project{
		ID:         id,
		datasets:   datasets,
		datasetMap: datasetMap,
		repo:       repo,
	}
}
