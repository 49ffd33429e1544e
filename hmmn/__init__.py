"""HMMN: Hierarchical Memory Matching Network (Seong et al., ICCV 2021). See hmmn/README.md."""
