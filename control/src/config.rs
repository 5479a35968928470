//! YAML configuration model (see conf/rvs.yaml).
